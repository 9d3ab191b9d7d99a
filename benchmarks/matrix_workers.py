"""Wall time of an experiment matrix, one cell at a time (all cores) against `--workers N` (a core share each).

    python benchmarks/matrix_workers.py [--workers 2] [--steps 10] [--arms vanilla,erase] [--seeds 41,42] [--rounds 1]

Runs `projected-grpo experiment` on the demo's organism config (8 prompts × 8 generations), the same matrix
into fresh directories, alternating sequential / parallel per round so machine noise hits both; evaluation
included, the organism and bases from the cache (built by a warm-up round that is not timed). Prints each
wall time and the ratio. A tiny model leaves cores idle in one process (per-op dispatch, small GEMMs), so
cells side by side finish sooner; the cells' numbers match a one-process run at the same thread count
(tests/test_experiments.py), not one at another.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def matrix(path: Path, arms: list[str], seeds: list[int], steps: int) -> None:
    path.write_text(f'name = "bench"\narms = {arms!r}\nseeds = {seeds!r}\nlast_k = 2\n'.replace("'", '"')
                    + f'[train]\npreset = "organism"\nsteps = {steps}\nsave_every = {steps}\n[eval]\nn_samples = 1\n')


def run(config: Path, out: Path, workers: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "projected_grpo.cli", "experiment", str(config), "--output", str(out),
                    "--workers", str(workers)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--arms", default="vanilla,erase")
    ap.add_argument("--seeds", default="41,42")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    arms, seeds = args.arms.split(","), [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        matrix(config, arms, seeds, args.steps)
        run(config, Path(tmp) / "warm-up", args.workers)  # organism + bases into the cache
        times: dict[int, list[float]] = {1: [], args.workers: []}
        for r in range(args.rounds):
            for w in (1, args.workers):
                times[w].append(run(config, Path(tmp) / f"w{w}-r{r}", w))
                print(f"round {r}: workers={w}: {times[w][-1]:.1f} s", flush=True)
    one, many = statistics.median(times[1]), statistics.median(times[args.workers])
    print(f"\n{len(arms) * len(seeds)} cells × {args.steps} steps + eval: one at a time {one:.1f} s, "
          f"{args.workers} at a time {many:.1f} s -> {one / many:.2f}x")


if __name__ == "__main__":
    main()
