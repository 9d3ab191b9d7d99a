"""Generation with transformers' cache (`torch.cat` per token) against the in-place growing cache, side by side.

    python benchmarks/kv_cache.py [--rounds 5] [--threads 2]

The organism's policy at the demo's GRPO shape: 8 training prompts × 8 samples, left-padded, 64 new tokens,
T = 1. Rounds alternate the two caches from the same seed; prints each one's median seconds, the ratio, and
whether every sampled token matched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache  # noqa: E402

from projected_grpo.organism.build import OrganismConfig, ensure_organism  # noqa: E402
from projected_grpo.training.kv_cache import growing_cache  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    organism, _ = ensure_organism(OrganismConfig())
    tokenizer = AutoTokenizer.from_pretrained(str(organism.model))
    model = AutoModelForCausalLM.from_pretrained(str(organism.model)).eval()
    records = [json.loads(line) for line in organism.train.read_text().splitlines()[:8]]
    texts = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False) for r in records]
    batch = tokenizer([t for t in texts for _ in range(8)], return_tensors="pt", padding=True, padding_side="left")
    final = batch["input_ids"].shape[-1] + 64  # what the trainer and evaluation reserve
    caches = {"transformers' DynamicCache": lambda: DynamicCache(config=model.config), "growing": lambda: growing_cache(model, final)}
    seconds, tokens = {name: [] for name in caches}, {}
    with torch.no_grad():
        for _ in range(args.rounds + 1):  # the first round warms up
            for name, make in caches.items():
                torch.manual_seed(0)
                start = time.perf_counter()
                tokens[name] = model.generate(**batch, cache=make(), do_sample=True, temperature=1.0, top_p=1.0,
                                              top_k=0, max_new_tokens=64, pad_token_id=tokenizer.pad_token_id)
                seconds[name].append(time.perf_counter() - start)
    before, after = (statistics.median(s[1:]) for s in seconds.values())
    print(f"{tuple(batch['input_ids'].shape)} prompt tokens, 64 new; median of {args.rounds}, {args.threads} threads")
    for name, s in seconds.items():
        print(f"  {name:28s} {statistics.median(s[1:]):.3f} s")
    print(f"  ratio {before / after:.2f}×; same tokens: {torch.equal(*tokens.values())}")


if __name__ == "__main__":
    main()
