"""Seconds per organism SFT step: eager fp32 (the build) against bf16 autocast and torch.compile, in one run.

    python benchmarks/sft_variants.py [--batches 40]

The organism's SFT batches (16 rows, its tokenizer and config), a fresh model per variant; median step after 5
warm-up steps; the first step of the compiled model (its compile) is printed apart. The two variants compute
another model (rounding differs), so neither can build the same organism: this measures what they would buy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from transformers import AutoTokenizer  # noqa: E402

from projected_grpo.directions.tokens import completion_batch, completion_nll  # noqa: E402
from projected_grpo.models import tiny_model  # noqa: E402
from projected_grpo.organism.build import OrganismConfig, ensure_organism, sft_examples  # noqa: E402
from projected_grpo.organism.tasks import ID_BASE, make_records, split_instances  # noqa: E402


def step_times(batches, vocab: int, c: OrganismConfig, variant: str) -> list[float]:
    model = tiny_model("tiny-qwen3", vocab_size=vocab, hidden=c.hidden, layers=c.layers, seed=c.seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.sft_lr, weight_decay=0.0)
    forward = torch.compile(model, dynamic=True) if variant == "compile" else model
    times = []
    for ids, attn, comp in batches:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16 autocast"):
            loss = completion_nll(forward, ids, attn, comp).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=40)
    args = ap.parse_args()
    c = OrganismConfig()
    organism, _ = ensure_organism(c)
    tokenizer = AutoTokenizer.from_pretrained(str(organism.model))
    train_i, _, _ = split_instances(c.seed, c.n_train, c.n_eval, c.n_pair_problems)
    prompts, completions = sft_examples(make_records(train_i, c.seed, ID_BASE), c, args.batches * c.sft_batch)
    b = c.sft_batch
    batches = [completion_batch(tokenizer, prompts[i:i + b], completions[i:i + b]) for i in range(0, len(prompts), b)]
    print(f"{args.batches} SFT batches of {b} rows, {torch.get_num_threads()} threads; median s/step after 5 warm-up steps")
    results = {}
    for variant in ("eager fp32", "bf16 autocast", "compile", "eager fp32 again"):
        times = step_times(batches, len(tokenizer), c, variant.replace(" again", ""))
        results[variant] = statistics.median(times[5:])
        first = f"  (first step, compiling: {times[0]:.1f} s)" if variant == "compile" else ""
        print(f"  {variant:18s} {results[variant]:.3f}{first}", flush=True)
    eager = (results["eager fp32"] + results["eager fp32 again"]) / 2
    print("  speed-up over eager: " + ", ".join(f"{v} {eager / results[v]:.2f}x" for v in ("bf16 autocast", "compile")))


if __name__ == "__main__":
    main()
