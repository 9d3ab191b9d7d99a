"""Where a run may start or continue: a new run needs a free output_dir; `--resume` needs a checkpoint of a
run with the same configuration, and a finished run is left alone. Checked before anything is loaded or
written, so a refused resume changes nothing in the run directory."""

from __future__ import annotations

import json
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from projected_grpo.errors import ConfigError
from projected_grpo.training.config import TrainConfig, saved_config
from projected_grpo.training.trainer import ADAPTER_FILE

# where the run lives, not what it computes: the directory being resumed is the run, wherever it was written from
NOT_COMPARED = {"output_dir"}
_ABSENT = object()


class RunFinished(Exception):
    """`--resume` on a run that already wrote its final adapter: nothing to do (the run is untouched)."""

    def __init__(self, run_dir: Path, steps: int):
        super().__init__(f"{run_dir}: already finished ({steps} steps, {run_dir / ADAPTER_FILE}); nothing changed")
        self.run_dir, self.steps = run_dir, steps


def config_diff(saved: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted field names whose values differ, each as `field: saved → new`."""
    out = []
    for key in sorted(set(saved) | set(new)):
        name = f"{prefix}{key}"
        if name in NOT_COMPARED:
            continue
        a, b = saved.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, name + ".")
        elif a != b:
            show = lambda v: "(not set)" if v is _ABSENT else json.dumps(v, ensure_ascii=False)  # noqa: E731
            out.append(f"{name}: {show(a)} → {show(b)}")
    return out


def last_complete_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint-N whose trainer state was written and reads back (HF's trainer writes it last): a
    kill during a save leaves a checkpoint directory without it, which a resume must skip, not load."""
    def complete(path: Path) -> bool:
        try:
            json.loads((path / "trainer_state.json").read_text())
            return True
        except (OSError, ValueError):
            return False

    found = [p for p in Path(run_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.name.split("-")[-1].isdigit()]
    done = [p for p in sorted(found, key=lambda p: int(p.name.split("-")[-1])) if complete(p)]
    return str(done[-1]) if done else None


def check_output_dir(config: TrainConfig, resume: bool) -> None:
    """The cheap checks, before an organism is built or a model loaded."""
    run_dir = Path(config.output_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"output_dir: {run_dir} exists and is not a directory. Fix: choose another output_dir "
                          "(--set output_dir=\"runs/NAME\")")
    if not resume and (run_dir / "metrics.jsonl").exists():
        raise ConfigError(f"output_dir: {run_dir} already holds a run. Fix: --resume it, or choose another output_dir")
    if resume and not (run_dir / "config.json").is_file():
        raise ConfigError(f"--resume: no checkpoint in {run_dir} (no run there). Fix: run without --resume first")


def resume_point(config: TrainConfig, resume: bool) -> str | None:
    """The checkpoint to continue from (None: start fresh). On `--resume`: ConfigError if the run was trained
    with another configuration (naming the differing fields), RunFinished if it is complete."""
    check_output_dir(config, resume)
    if not resume:
        return None
    run_dir = Path(config.output_dir)
    # read back through the current schema, so a run saved before fields moved or were added resumes too
    saved = saved_config(json.loads((run_dir / "config.json").read_text()), str(run_dir / "config.json"))
    as_saved = lambda c: json.loads(json.dumps(c.as_dict(), default=str))  # noqa: E731  (as config.json holds it)
    diff = config_diff(as_saved(saved), as_saved(config))
    if diff:
        raise ConfigError(f"--resume: {run_dir} was trained with a different configuration ({'; '.join(diff)}). "
                          "Fix: resume with the run's own config (its config.json), or train the new one in "
                          "another output_dir")
    if (run_dir / ADAPTER_FILE).is_file():
        raise RunFinished(run_dir, config.steps)
    checkpoint = last_complete_checkpoint(run_dir)
    if checkpoint is None:
        raise ConfigError(f"--resume: no checkpoint in {run_dir}. Fix: run without --resume first")
    return checkpoint
