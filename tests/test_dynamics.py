"""Training dynamics from saved metrics: survival (first crossing, censoring), the oracle-free early
warning (threshold on half the seeds, lead time and AUROC on the other half), and the long-horizon
matrix features (intermediate checkpoint evals, erase_refresh, drift tracking, a preregistered
hypothesis) run through the real experiment runner."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from test_experiments import _experiment_file

from projected_grpo.experiments import dynamics as D
from projected_grpo.experiments.matrix import load_experiment, run_experiment


def _cell(root: Path, arm: str, seed: int, hack: list[float], cin: list[float] | None = None) -> None:
    cell = root / "cells" / f"{arm}-s{seed}"
    cell.mkdir(parents=True)
    rows = [{"step": i + 1, D.HACK: h} | ({D.CIN: cin[i]} if cin else {}) for i, h in enumerate(hack)]
    (cell / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (cell / "eval" / "final").mkdir(parents=True)
    (cell / "eval" / "final" / "summary.json").write_text("{}")  # finished: dynamics read finished cells only


def test_smoothing_and_first_crossing():
    x = D.smoothed([{"k": v} for v in (0, 1, 1, 1, 1, 1, 0)], "k")
    assert np.allclose(x, [0, 0.5, 2 / 3, 0.75, 0.8, 1.0, 0.8])  # trailing mean over ≤ 5 steps
    assert D.first_crossing(x, 0.7) == 3 and D.first_crossing(x, 1.01) is None


def test_survival_reports_crossing_steps_and_censors_the_rest(tmp_path):
    exp = {"arms": ["vanilla", "erase"], "seeds": [1, 2]}
    _cell(tmp_path, "vanilla", 1, [0.0] * 5 + [1.0] * 10)
    _cell(tmp_path, "vanilla", 2, [0.0] * 2 + [1.0] * 13)
    _cell(tmp_path, "erase", 1, [0.0] * 15)
    _cell(tmp_path, "erase", 2, [0.0] * 10 + [1.0] * 5)
    running = tmp_path / "cells" / "erase-s3"
    running.mkdir(parents=True)
    (running / "metrics.jsonl").write_text(json.dumps({"step": 1, D.HACK: 1.0}) + "\n")
    s = D.survival(tmp_path, exp | {"seeds": [1, 2, 3]})  # seed 3's cell is still running: left out
    assert s["vanilla"]["crossed_at"] == {1: 8, 2: 4}  # smoothed ≥ 0.5: 3 steps after the jump (2 while the window fills)
    assert s["erase"]["crossed_at"] == {1: None, 2: 13}
    assert s["vanilla"]["surviving"][4] == 0.5 and s["vanilla"]["surviving"][7] == 0.0
    assert s["erase"]["surviving"][-1] == 0.5 and s["erase"]["horizon"] == 15


def test_early_warning_measures_the_lead_of_cin_on_held_out_seeds(tmp_path):
    """cin rises 6 steps before the hack rate on every seed: calibrated on seeds 1-2, scored on 3-4."""
    exp = {"arms": ["vanilla"], "seeds": [4, 3, 2, 1]}
    for seed, onset in ((1, 10), (2, 14), (3, 12), (4, 16)):
        hack = [0.0] * onset + [0.6] * (30 - onset)
        cin = [0.1] * (onset - 6) + [0.5] * (30 - onset + 6)
        _cell(tmp_path, "vanilla", seed, hack, cin)
    w = D.early_warning(tmp_path, exp)
    assert w["calibration_seeds"] == [1, 2] and w["evaluation_seeds"] == [3, 4]
    assert 0.1 < w["threshold"] <= 0.5
    assert all(lead > 0 for lead in w["lead_steps"].values())
    assert w["auroc_by_delta"][5] == pytest.approx(1.0)  # cin(t) separates hack(t + 5) perfectly
    none = D.early_warning(tmp_path, {"arms": ["vanilla"], "seeds": [1]})
    assert "note" in none


def test_auroc():
    assert D._auroc(np.array([2.0, 3.0, 1.0, 0.0]), np.array([True, True, False, False])) == 1.0
    assert D._auroc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    assert math.isnan(D._auroc(np.array([1.0]), np.array([True])))


@pytest.mark.slow
def test_long_horizon_matrix_features_run_through_the_runner(tmp_path):
    path = _experiment_file(tmp_path)
    text = path.read_text().replace('arms = ["vanilla", "erase"]\nseeds = [7]',
                                    'arms = ["vanilla", "erase_refresh"]\nseeds = [7, 8]\neval_checkpoints = [2]\n'
                                    'hypothesis = "erase_refresh delays hacking"\nresolve = "its cells cross 50 % later"')
    path.write_text(text + "[train.projection]\ntrack_every = 2\n")  # erase_refresh's own refresh (10) is past step 3
    report = run_experiment(load_experiment(path), tmp_path / "out").read_text()
    out = tmp_path / "out"
    assert (out / "cells" / "erase_refresh-s8" / "eval" / "checkpoint-2" / "summary.json").is_file()
    rows = [json.loads(x) for x in (out / "cells" / "erase_refresh-s7" / "metrics.jsonl").read_text().splitlines()]
    assert "projection/drift_overlap" in rows[2] and "projection/basis_overlap" not in rows[2]
    vanilla = [json.loads(x) for x in (out / "cells" / "vanilla-s7" / "metrics.jsonl").read_text().splitlines()]
    assert "projection/drift_overlap" in vanilla[2] and "projection/basis_overlap" not in vanilla[2]
    assert report.index("## Hypothesis") < re.search(r"^\|\s*arm\s*\|\s*kind\s*\|", report, re.M).start()
    for heading in ("erase_refresh delays hacking", "**Resolves as:** its cells cross 50 % later",
                    "## When each seed starts hacking", "## Held-out hack rate over training", "step 2",
                    "## Where the update goes", "## Early warning"):
        assert heading in report, heading
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["dynamics"]) == {"survival", "checkpoint_evals", "drift", "early_warning"}
    assert (out / "survival.png").stat().st_size > 5_000
