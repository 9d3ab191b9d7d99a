"""Per-step metrics of a run: one JSON line per optimizer step (TRL's logs, projection statistics,
oracle labels, timings), every rollout with its labels, sampled completions, and a CSV at the end."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import polars as pl
from loguru import logger
from transformers import TrainerCallback

from projected_grpo.atomic import atomic_path
from projected_grpo.projection.optimizer import ProjectingOptimizer
from projected_grpo.training.reward import LabelLog, TimedReward, label_metrics
from projected_grpo.training.runlog import step_line
from projected_grpo.training.trainer import AdapterGRPOTrainer


class MetricsCallback(TrainerCallback):
    """One JSON line per optimizer step: TRL's logs + projection stats + oracle labels + timings."""

    def __init__(self, run_dir: Path, optimizer: ProjectingOptimizer, labels: LabelLog, reward: TimedReward,
                 sample_every: int, seed: int, trainer: AdapterGRPOTrainer, console: bool = True):
        self.path, self.samples = run_dir / "metrics.jsonl", run_dir / "completions.jsonl"
        self.rollouts = run_dir / "rollouts.jsonl"
        self.optimizer, self.labels, self.reward, self.sample_every = optimizer, labels, reward, sample_every
        self.rng = random.Random(seed)
        self.trainer = trainer
        self.log = logger.bind(console=console)  # the step line: train.log always, the console when asked
        self.step_start = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs:
            return
        rows = self.labels.drain()
        stats = self.optimizer.last_stats
        row = {"step": state.global_step, **{k: _num(v) for k, v in logs.items()},
               **{f"projection/{k}": v for k, v in stats.items() if not k.startswith("time_")}, **label_metrics(rows),
               **self.reward.last_info,
               **self._timings()}
        if not state.is_world_process_zero:  # one writer; each rank logs its own rollouts' labels
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.log.info(step_line(state, row, stats))
        keep = ("reward_hack_label", "is_reward_hack_strict", "is_reward_hack_loose", "eq_correct", "eq_hinted",
                "gt_correct_hardened", "exploited", "mode")
        with self.rollouts.open("a") as f:  # every rollout of the step, with its oracle labels (probe data)
            for record, response, fields in rows:
                f.write(json.dumps({"step": state.global_step, "id": record["id"], "response": response,
                                    **{k: fields[k] for k in keep}}) + "\n")
        if rows and self.sample_every and state.global_step % self.sample_every == 0:
            record, response, fields = self.rng.choice(rows)
            with self.samples.open("a") as f:
                f.write(json.dumps({"step": state.global_step, "id": record["id"], "response": response,
                                    **{k: fields[k] for k in keep}}) + "\n")

    def _timings(self) -> dict[str, float]:
        step = time.perf_counter() - self.step_start
        generation = self.trainer.last_generation_s
        grading = self.reward.last_seconds
        projection = self.optimizer.last_stats.get("time_projection_s", 0.0)
        return {"time/step_s": step, "time/generation_s": generation, "time/grading_s": grading,
                "time/projection_s": projection,
                "time/forward_backward_other_s": max(step - generation - grading - projection, 0.0)}

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_metrics_csv(self.path)


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def write_metrics_csv(jsonl: Path) -> None:
    """metrics.csv beside metrics.jsonl: one column per key seen in any step (empty where a step lacks it)."""
    if jsonl.is_file() and jsonl.stat().st_size:
        with atomic_path(jsonl.with_suffix(".csv")) as tmp:
            pl.read_ndjson(jsonl, infer_schema_length=None).write_csv(tmp)
