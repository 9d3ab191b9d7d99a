"""Seconds to sample a held-out evaluation slice on the organism at several generate batch sizes, interleaved.

    python benchmarks/eval_batch.py [--sizes 16,32,64,96] [--rounds 3] [--threads 1] [--samples 4]

The built organism (from the cache; built once if missing) samples `--samples` completions for each of its
48 held-out problems (no hint, T = 1, 64 new tokens) with `generate_texts`, the function `evaluate` uses,
`--rounds` times per size, sizes alternating so machine noise hits all. Prints the median per size and
its ratio to the first. One thread is what an experiment cell gets under `--workers 2` on 2 cores. Timing
only: the sampled texts differ between sizes (a batch's shape changes the last bits of its arithmetic).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,32,64,96")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
    import torch

    from projected_grpo.environment.dataset import load_records
    from projected_grpo.environment.modes import make_hinted
    from projected_grpo.models import load_model
    from projected_grpo.organism.build import OrganismConfig, ensure_organism
    from projected_grpo.training.evaluate import EvalSettings, generate_texts

    torch.set_num_threads(args.threads)
    organism, _ = ensure_organism(OrganismConfig())
    model, tokenizer = load_model(str(organism.model))
    prompts = [r["prompt"] for r in make_hinted(load_records(organism.eval), "nohint", 0) for _ in range(args.samples)]
    sizes = [int(s) for s in args.sizes.split(",")]
    times: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            torch.manual_seed(0)
            start = time.perf_counter()
            generate_texts(model, tokenizer, prompts, EvalSettings(batch_size=size, temperature=1.0, top_p=1.0), 64, {})
            times[size].append(time.perf_counter() - start)
    print(f"{len(prompts)} completions, {args.threads} thread(s), median of {args.rounds} interleaved rounds")
    first = statistics.median(times[sizes[0]])
    for size in sizes:
        t = statistics.median(times[size])
        print(f"  batch {size:4d}: {t:6.2f} s   {first / t:.2f}x batch {sizes[0]}")


if __name__ == "__main__":
    main()
