"""Where models come from: a hub id (online users), a local directory, a GGUF file, or a tiny model
built from a config (tests; no download). All paths end in a normal HF causal LM + tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_ARCHS = ("tiny-qwen3", "tiny-llama", "tiny-qwen2")


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + chat specials) with a Qwen-style chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def train_bpe_tokenizer(texts: list[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained here on `texts` (deterministic), with the chat specials and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIALS[1:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(arch: str = "tiny-qwen3", vocab_size: int = 259, hidden: int = 64, layers: int = 2,
               seed: int = 0, dtype: torch.dtype = torch.float32):
    """A small randomly initialised model of a real architecture, built from its config."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    common = dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                  tie_word_embeddings=False)
    torch.manual_seed(seed)
    if arch == "tiny-qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**common, head_dim=hidden // 4))
    elif arch == "tiny-llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "tiny-qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {', '.join(TINY_ARCHS)}")
    return model.to(dtype).eval()


def default_device() -> torch.device:
    """Where this process trains: its GPU (LOCAL_RANK under torchrun / accelerate) when there is one, else the
    CPU — the device TRL's trainer moves the model to. Extraction, probes and evaluation run there too."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def dtype_of(name: str) -> torch.dtype:
    """`model.dtype` ("float32" | "bfloat16" | "float16") as a torch dtype."""
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_model(source: str, dtype: torch.dtype = torch.float32, gguf_file: str | None = None,
               device: torch.device | str | None = None):
    """(model, tokenizer) from `tiny-<arch>`, a fetched real model's name (model_fetch.py), a local directory,
    a `.gguf` file, or a hub id; in `dtype`, and on `device` when given (else where it loads: the CPU)."""
    model, tokenizer = _load(source, dtype, gguf_file)
    return (model.to(device) if device is not None else model), tokenizer


def _load(source: str, dtype: torch.dtype, gguf_file: str | None):
    from projected_grpo.model_fetch import resolve_source

    source = resolve_source(source)  # "smollm2-135m" → its cached directory, or an error naming the fetch command
    if source in TINY_ARCHS:
        tokenizer = byte_tokenizer()
        return tiny_model(source, vocab_size=len(tokenizer), dtype=dtype), tokenizer
    path = Path(source)
    if path.suffix == ".gguf":
        gguf_file, path = path.name, path.parent
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(str(path) if path.exists() else source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(path) if path.exists() else source, dtype=dtype, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
