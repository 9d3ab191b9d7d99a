"""`projected-grpo fast-dev-run`: the real pipeline end to end on tiny inputs, in a few minutes.

Default: a format-following tiny model (organism/warmup.py) → basis extraction (real and every control)
→ every self-contained arm (probe / judge arms need a probe / a server) for two GRPO steps on real problems
→ adapter checkpoints → a killed run resumed and compared with an uninterrupted one → held-out evaluation
of the route run.

`model=NAME` (a fetched real LM, e.g. smollm2-135m): the same pipeline on that model and the real benchmark's
prompts — extraction from the LeetCode pair sets, vanilla and erase, kill + resume of erase, held-out
evaluation of erase — sized for ≈ 15 min on 2 CPU cores.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from transformers import TrainerCallback
from loguru import logger

from projected_grpo.environment.dataset import default_benchmark_path
from projected_grpo.errors import ConfigError
from projected_grpo.organism.warmup import build_format_model
from projected_grpo.training.arms import ARMS
from projected_grpo.training.config import load_config
from projected_grpo.training.evaluate import EvalSettings, evaluate
from projected_grpo.training.run import build_run, train

VOLATILE = ("time/", "step_time", "train_runtime")


class StopAt(TrainerCallback):
    """Stops training after `step` (a stand-in for a killed job; the checkpoint is already written)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _stable(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(VOLATILE)}


def fast_dev_run(out_dir: str | Path, problems: int = 4, steps: int = 2, model: str | None = None,
                 extra_overrides: Sequence[str] = ()) -> dict:
    """`extra_overrides`: config overrides appended to every run's (e.g. `model.dtype="bfloat16"` on a GPU)."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    if model is None:
        model_dir, authored = build_format_model(out_dir / "warmup")
        timings["warm-up model"] = time.perf_counter() - start
        data = default_benchmark_path() or authored
        base = [f'model.source="{model_dir}"', "grpo.max_completion_length=96", "grpo.learning_rate=0.05"]
        arm_names = [a for a in ARMS if not (ARMS[a].intervention or "").startswith(("probe_", "judge_"))]
    else:  # a real LM: the real benchmark, its pair sets, the method's arm and its baseline
        data = default_benchmark_path()
        if data is None:
            raise ConfigError("fast-dev-run --model needs the real benchmark: set PROJECTED_GRPO_BENCHMARK to "
                              "leetcode_test_medhard.jsonl (or put it in ../shared/data)")
        base = [f'model.source="{model}"', "grpo.max_completion_length=64", "grpo.learning_rate=1e-3"]
        arm_names = ["vanilla", "erase"]
    base += [f'data.path="{data}"', f"data.n_problems={problems}", f"steps={steps}", "save_every=1",
             "intervention.tdga.warmup_steps=2", *extra_overrides]
    eval_arm = "route" if "route" in arm_names else "erase"

    def config(name: str, arm: str, extra=()):
        return load_config(preset="tiny", overrides=[*base, f'arm="{arm}"', f'output_dir="{out_dir / name}"', *extra])

    arms = {}
    for arm in arm_names:
        t = time.perf_counter()
        run_dir = train(config(arm, arm))
        rows = _rows(run_dir)
        arms[arm] = {"reward": rows[-1]["reward"], "hack_strict": rows[-1].get("labels/hack_strict"),
                     "cin": rows[-1]["projection/cin"], "leak": max(r["projection/leak_own_basis"] for r in rows),
                     "leak_heldout": max(r["projection/leak_heldout"] for r in rows),
                     "checkpoints": sorted(p.name for p in run_dir.glob("checkpoint-*"))}
        timings[f"arm {arm}"] = time.perf_counter() - t
        logger.info(f"  {arm:12s} reward {arms[arm]['reward']:.2f}  hack {arms[arm]['hack_strict']:.2f}  "
                   f"cin {arms[arm]['cin']:.3f}  leak {arms[arm]['leak']:.1e}  held-out leak {arms[arm]['leak_heldout']:.3f}  "
                   f"({timings[f'arm {arm}']:.0f}s)")
    t = time.perf_counter()
    killed = config("resumed", "erase")
    run = build_run(killed, out_dir / "resumed")
    run.trainer.add_callback(StopAt(1))
    run.trainer.train()
    run.sandbox.close()
    train(killed, resume=True)
    resumed_ok = [_stable(r) for r in _rows(out_dir / "resumed")] == [_stable(r) for r in _rows(out_dir / "erase")]
    timings["kill + resume"] = time.perf_counter() - t
    logger.info(f"  resume after a kill matches the uninterrupted run: {resumed_ok}")
    t = time.perf_counter()
    summary = evaluate(out_dir / eval_arm, EvalSettings(n_samples=2, n_problems=2, max_new_tokens=64))
    timings["eval"] = time.perf_counter() - t
    logger.info(f"  eval ({eval_arm}): " + ", ".join(f"{k}: hack {v['is_reward_hack_strict']['rate']:.2f} correct "
                                              f"{v['eq_correct']['rate']:.2f}" for k, v in summary["results"].items()))
    timings["total"] = time.perf_counter() - start
    projection_held = all(a["leak"] <= 1e-6 for name, a in arms.items() if ARMS[name].mode in ("erase", "route"))
    report = {"model": model or "warm-up tiny model", "arms": arms, "resume_matches": resumed_ok, "projection_held": projection_held,
              "eval": summary["results"], "timings_s": timings, "ok": resumed_ok and projection_held}
    (out_dir / "fast_dev_run.json").write_text(json.dumps(report, indent=2))
    return report
