"""A tiny local judge model for the LLM-judge arms on CPU: fine-tuned to answer the reference's judge
prompt with "1" for the hack side of the organism's mechanism pairs and "0" for the clean side.
Serve it with any OpenAI-compatible server (e.g. `transformers serve DIR`); it is a stand-in for a
real judge model offline, with the same prompt, client and scoring."""

from __future__ import annotations

from pathlib import Path

from projected_grpo.directions.pairs import load_pairs
from projected_grpo.interventions.judge import JUDGE_PROMPT
from projected_grpo.models import tiny_model, train_bpe_tokenizer
from projected_grpo.organism.sft import supervised_finetune


def build_judge_model(out_dir: str | Path, pairs_path: str | Path, steps: int = 200, seed: int = 0) -> Path:
    prompts, answers = [], []
    for p in load_pairs(pairs_path):
        for response, verdict in ((p.hack, "1"), (p.clean, "0")):
            text = JUDGE_PROMPT.format(question=p.prompt[-1]["content"], answer=response)
            prompts.append([{"role": "user", "content": text}])
            answers.append(verdict)
    tokenizer = train_bpe_tokenizer([m[0]["content"] for m in prompts] + answers, 1024)
    model = tiny_model("tiny-qwen3", vocab_size=len(tokenizer), hidden=64, layers=2, seed=seed)
    supervised_finetune(model, tokenizer, prompts, answers, steps=steps, lr=3e-3, batch_size=8, seed=seed)
    # A server stops at the model's eos id, not the tokenizer's: without this the reply runs on past
    # "<|im_end|>" and a server's output parser may keep a later segment (transformers serve did: "0").
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id, cfg.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
