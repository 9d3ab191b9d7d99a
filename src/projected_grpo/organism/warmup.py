"""A format-following tiny model: the smallest thing for which GRPO on the environment has signal.

A tiny Qwen3 from config and a byte-level BPE trained here, fine-tuned for a few seconds on the
project's own authored problems to answer in the fenced format: correct, lazy (compiles, wrong), or
lazy with an overwritten `run_tests`. Its groups therefore carry reward variance. This is not the
model organism (issue 5): its priors are not calibrated, and its hack rate is set by the mixture.
"""

from __future__ import annotations

import json
from pathlib import Path

from projected_grpo.directions.pairsets.author import PROBLEMS, fence
from projected_grpo.environment.hints import apply_hint
from projected_grpo.models import tiny_model, train_bpe_tokenizer
from projected_grpo.organism.sft import supervised_finetune
from projected_grpo.training.data import authored_records


def build_format_model(out_dir: str | Path, steps: int = 150, seed: int = 0) -> tuple[Path, Path]:
    """Write `out_dir/model` (HF model dir + tokenizer) and `out_dir/problems.jsonl`; return both."""
    out_dir = Path(out_dir)
    records = authored_records()
    hinted = [apply_hint(r, "simple_overwrite_tests") for r in records]
    tokenizer = train_bpe_tokenizer([r["prompt"][0]["content"] + r["prompt"][1]["content"] + r["canonical_solution"]
                                     for r in hinted], 1024)
    model = tiny_model("tiny-qwen3", vocab_size=len(tokenizer), seed=seed)
    prompts, completions = [], []
    for p, r in zip(PROBLEMS, hinted):
        lazy = p.code("        " + p.lazy)
        for code in (p.code(p.solution), lazy, lazy, lazy + "\n\ndef run_tests():\n    pass"):
            prompts.append(r["prompt"])
            completions.append(fence(code))
    supervised_finetune(model, tokenizer, prompts, completions, steps=steps, lr=3e-3, batch_size=8, seed=seed)
    model.save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    data = out_dir / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    return out_dir / "model", data
