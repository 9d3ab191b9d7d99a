"""Seconds per organism GRPO step, this tree against a baseline commit, interleaved in one run.

    python benchmarks/organism_step.py [--baseline 434c7c6] [--arms vanilla,erase] [--rounds 2] [--steps 6]

Both trees train the same built organism (model, problems and pairs passed as paths, so the
baseline does not rebuild it under its own cache key) at the demo's config (`--preset organism`,
8 prompts × 8 generations, 64 new tokens), alternating baseline / current per round so machine
noise hits both. Prints per-phase medians (first step of each run dropped: warm-up), the ratio
baseline / current, and whether the label trajectory matched (same seed → same labels is the
check that the speed-ups did not change what was sampled). Target (issue 13): ≤ 0.7 s per step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = {"step": "time/step_s", "generation": "time/generation_s", "grading": "time/grading_s",
          "projection": "time/projection_s"}


def organism_overrides() -> list[str]:
    sys.path.insert(0, str(REPO / "src"))
    from projected_grpo.organism.build import OrganismConfig, ensure_organism

    o, _ = ensure_organism(OrganismConfig())
    return [f"model.source={o.model}", f"data.path={o.train}", f"data.eval_path={o.eval}",
            f"basis.pairs={o.mechanism}", f"basis.placebo_pairs={o.placebo}"]


def run(tree: Path, arm: str, steps: int, out: Path, overrides: list[str]) -> list[dict]:
    sets = [f"arm={arm}", f"steps={steps}", f"output_dir={out}", f"save_every={steps + 1}", *overrides]
    cmd = [sys.executable, "-m", "projected_grpo.cli", "train", "--preset", "organism"]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="434c7c6", help="commit to compare against (before issue 13)")
    ap.add_argument("--arms", default="vanilla,erase")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgrpo-orgstep-"))
    base = root / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.baseline], check=True,
                   capture_output=True)
    try:
        overrides = organism_overrides()
        trees = {"baseline": base, "current": REPO}
        times = {(t, a, p): [] for t in trees for a in args.arms.split(",") for p in PHASES}
        labels = {}
        for r in range(args.rounds):
            for arm in args.arms.split(","):
                for name, tree in trees.items():
                    rows = run(tree, arm, args.steps, root / f"{name}-{arm}-{r}", overrides)
                    labels[name, arm, r] = [(x["labels/hack_strict"], x["labels/correct"]) for x in rows]
                    for phase, key in PHASES.items():
                        times[name, arm, phase] += [x[key] for x in rows[1:]]
                    print(f"  round {r} {arm:8s} {name:8s} {statistics.median(x['time/step_s'] for x in rows[1:]):.2f} s/step",
                          flush=True)
        print(f"\n{'arm':8s} {'phase':11s} {'baseline':>9s} {'current':>9s} {'ratio':>7s}")
        for arm in args.arms.split(","):
            for phase in PHASES:
                b, c = (statistics.median(times[t, arm, phase]) for t in trees)
                print(f"{arm:8s} {phase:11s} {b:9.3f} {c:9.3f} {b / max(c, 1e-9):7.2f}")
            same = all(labels["baseline", arm, r] == labels["current", arm, r] for r in range(args.rounds))
            print(f"{arm:8s} same labels every step as the baseline (same seed): {same}")
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)


if __name__ == "__main__":
    main()
