"""A finished experiment's record without its weights (`projected-grpo report RUN --to DEST`).

DEST gets what the report is computed from — the experiment record, timings, probes, and per cell its
config, provenance, metrics.jsonl and evaluation summaries — and the report written from them. So a
committed results folder regenerates its report on its own (`projected-grpo report DEST`), and an
experiment continues in a copy of it: cells with their evaluations count as done; only missing ones train.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from projected_grpo.atomic import write_json_atomic
from projected_grpo.errors import ConfigError
from projected_grpo.experiments.matrix import cell_done, recorded
from projected_grpo.experiments.report import write_report
from projected_grpo.provenance import provenance

CELL_FILES = ("config.json", "provenance.json", "metrics.jsonl")  # + eval/*/summary.json
MARKER = "export.json"  # what makes a directory an export (`--to` replaces only those)


def _experiment(run_dir: Path) -> dict:
    return recorded(json.loads((run_dir / "experiment.json").read_text())["experiment"])


def export_run(run_dir: str | Path, dest: str | Path) -> Path:
    """Write the weight-free record of `run_dir` and its report to `dest` (replaced whole, never half-written);
    returns dest's report.md. A `dest` that is not an earlier export of the same experiment is refused."""
    run_dir, dest = Path(run_dir).resolve(), Path(dest).resolve()
    if dest == run_dir:
        raise ConfigError(f"{dest}: is the run directory itself. Fix: name another directory with --to")
    if dest.exists() and not (dest / MARKER).is_file():
        raise ConfigError(f"{dest}: exists and is not an export (no {MARKER}); it is left as it is. "
                          "Fix: name a new directory, or remove it first")
    exp = _experiment(run_dir)
    if dest.exists() and _experiment(dest) != exp:
        raise ConfigError(f"{dest}: holds an export of a different experiment than {run_dir}. Fix: name another directory")
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.old")
    try:
        tmp.mkdir(parents=True)
        for name in ("experiment.json", "timings.json"):
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, tmp / name)
        if (run_dir / "probes").is_dir():
            shutil.copytree(run_dir / "probes", tmp / "probes")
        for cell in sorted((run_dir / "cells").iterdir()) if (run_dir / "cells").is_dir() else ():
            if not cell_done(cell, exp.get("eval_checkpoints", [])):
                continue  # unfinished: a continued experiment would train it again anyway
            for path in [cell / n for n in CELL_FILES] + sorted(cell.glob("eval/*/summary.json")):
                target = tmp / "cells" / cell.name / path.relative_to(cell)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        write_json_atomic(tmp / MARKER, {"source": str(run_dir), "provenance": provenance({})})
        write_report(tmp)
        if dest.exists():
            dest.rename(old)
        try:
            tmp.rename(dest)
        except BaseException:
            if old.exists():
                old.rename(dest)  # the previous export stays
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest / "report.md"
