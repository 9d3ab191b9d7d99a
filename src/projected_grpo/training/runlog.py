"""What a training run tells a human: its train.log (logs.run_log) gets the config summary, the model and basis
it resolved, one line per step, each checkpoint, a resume and the end; the same lines reach the console
when the run shows its own progress bar (`console`), and stay in the file under another one (the
experiment runner's). metrics.jsonl / metrics.csv stay the record to compute from."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from loguru import logger
from transformers import TrainerCallback

from projected_grpo.logs import run_log
from projected_grpo.training.config import TrainConfig
from projected_grpo.training.liblog import library_log

LOG_FILE = "train.log"


def config_summary(config: TrainConfig) -> list[str]:
    """One line of top-level settings, then one line per config section (config.json holds it in full)."""
    values = config.as_dict()
    top = ", ".join(f"{k}={v}" for k, v in values.items() if not isinstance(v, dict))
    return [f"config: {top}"] + [f"  {k}: " + ", ".join(f"{kk}={vv}" for kk, vv in v.items())
                                 for k, v in values.items() if isinstance(v, dict) and v]


@contextlib.contextmanager
def logged_run(config: TrainConfig, checkpoint: str | None, console: bool) -> Iterator[None]:
    """The run's train.log for its duration (library messages too, liblog.py): a start banner with the config,
    the resume point, and how the run ended (a traceback stays in the file; the caller reports the error)."""
    path = Path(config.output_dir) / LOG_FILE
    log = logger.bind(console=console)
    with library_log(path), run_log(path):
        start = time.perf_counter()
        if checkpoint is None:
            log.info(f"training {config.output_dir}: arm {config.arm}, seed {config.seed}, {config.steps} steps")
        else:
            log.info(f"resuming {config.output_dir} from {Path(checkpoint).name} (of {config.steps} steps); "
                     "metrics logged after it are dropped")
        for line in config_summary(config):
            logger.bind(console=False).info(line)
        try:
            yield
        except KeyboardInterrupt:
            log.warning(f"interrupted after {time.perf_counter() - start:.0f}s; `train --resume` continues "
                        "from the last checkpoint")
            raise
        except BaseException as e:
            logger.bind(console=False).opt(exception=e).error(f"stopped by {type(e).__name__}: {e}")
            raise
        since = " since the resume" if checkpoint else ""
        log.info(f"finished {config.steps} steps ({time.perf_counter() - start:.0f}s{since}): {config.output_dir}")


class CheckpointLog(TrainerCallback):
    """A line per saved checkpoint (rank 0), so the log says where a resume would start."""

    def __init__(self, console: bool):
        self.log = logger.bind(console=console)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.log.info(f"saved checkpoint-{state.global_step}")


def step_line(state, row: dict, stats: dict) -> str:
    return (f"step {state.global_step}/{state.max_steps}  reward {row['reward']:.2f}  "
            f"hack {row.get('labels/hack_strict', 0):.2f}  correct {row.get('labels/correct', 0):.2f}  "
            f"cin {stats.get('cin', 0):.3f}  leak(held-out) {stats.get('leak_heldout', float('nan')):.3f}  "
            f"({row['time/step_s']:.1f}s)")
