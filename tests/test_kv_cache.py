"""The in-place key/value cache samples exactly what transformers' own cache samples, in `generate`
and through the trainer's generation (which now uses it)."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, GenerationConfig

from projected_grpo.models import tiny_model
from projected_grpo.training import kv_cache
from projected_grpo.training.config import load_config
from projected_grpo.training.kv_cache import GrowingLayer, growing_cache
from projected_grpo.training.run import build_run


@pytest.mark.parametrize("arch", ["tiny-qwen3", "tiny-qwen2", "tiny-llama"])
@pytest.mark.parametrize("how", ["sampled", "beam search"])
def test_growing_cache_generates_the_same_tokens_as_the_default_cache(arch, how):
    model = tiny_model(arch, vocab_size=64, hidden=32, layers=2, seed=1)
    lengths = [3, 7, 5, 1]  # left-padded rows; 3 + 40 new tokens outgrow the first reservation twice
    ids = torch.stack([torch.cat([torch.zeros(7 - n, dtype=torch.long), torch.randint(1, 64, (n,))]) for n in lengths])
    attn = (torch.arange(7) >= 7 - torch.tensor(lengths)[:, None]).long()
    kwargs = dict(input_ids=ids, attention_mask=attn, max_new_tokens=40, pad_token_id=0)
    kwargs |= dict(do_sample=True, top_k=0) if how == "sampled" else dict(do_sample=False, num_beams=3)

    def run(**extra):
        torch.manual_seed(0)
        return model.generate(**kwargs, **extra)

    reference = run()
    for capacity in (0, 7 + 40):  # doubling when full (outgrows 14 positions twice), or the final length reserved once
        cache = growing_cache(model, capacity)
        assert torch.equal(run(cache=cache), reference)
        assert all(type(layer) is GrowingLayer for layer in cache.layers)
        assert cache.layers[0].keys.shape[-2] == 7 + 40 - 1  # the last token is sampled, never cached
        if capacity and how == "sampled":
            assert cache.layers[0]._key_buffer.shape[-2] == capacity


def test_a_call_or_model_that_chooses_its_cache_gets_no_growing_cache():
    model = tiny_model("tiny-qwen3", vocab_size=64, hidden=32, layers=2, seed=1)
    generate = model.generate
    kv_cache.generate_with_growing_cache(model)
    ids = torch.randint(1, 64, (2, 5))
    assert "cache" in kv_cache.growing_cache_kwargs(model, {"input_ids": ids, "max_new_tokens": 4})
    for kwargs in ({"cache_implementation": "static"}, {"use_cache": False}, {"past_key_values": DynamicCache()}):
        assert kv_cache.growing_cache_kwargs(model, {"input_ids": ids, **kwargs}) == {}
    model.generation_config.cache_implementation = "static"  # as a model's generation_config.json may say
    assert kv_cache.growing_cache_kwargs(model, {"input_ids": ids, "generation_config": GenerationConfig()}) == {}
    torch.manual_seed(0)
    ours = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0)  # no "both a cache and an
    torch.manual_seed(0)                                                                    # implementation" error
    assert torch.equal(ours, generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0))


def test_the_trainer_generates_with_a_growing_cache_and_the_same_completions(tmp_path, monkeypatch):
    monkeypatch.setenv("PROJECTED_GRPO_CACHE", str(tmp_path / "cache"))
    run = build_run(load_config(preset="tiny", overrides=[f'output_dir="{tmp_path / "run"}"']), tmp_path / "run")
    made = []
    monkeypatch.setattr(kv_cache, "growing_cache", lambda model, capacity: made.append(growing_cache(model, capacity)) or made[-1])
    prompts = [p for p in run.trainer.train_dataset["prompt"][:2] for _ in range(4)]

    def completions():
        torch.manual_seed(0)
        return run.trainer._generate(prompts)[1]

    ours = completions()
    assert made and made[-1].layers[0].get_seq_length() > 0  # the trainer's generate used the growing cache
    run.model.generate = type(run.model).generate.__get__(run.model)  # transformers' own generate and cache
    assert completions() == ours
    run.sandbox.close()
