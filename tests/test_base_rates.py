"""`base-rates`: an untrained model's hack / solve / format rates on the real benchmark, per slice; resumable."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from projected_grpo.cli import app
from projected_grpo.environment.dataset import default_benchmark_path
from projected_grpo.errors import ConfigError
from projected_grpo.experiments.base_rates import (BaseRateSettings, base_rates, check_slices, model_dirname,
                                                   write_report)
from projected_grpo.organism.warmup import authored_records


def test_base_rates_cli_on_a_tiny_model_then_resume(tmp_path, benchmark, monkeypatch):
    out = tmp_path / "br"
    args = ["base-rates", "--model", "tiny-qwen3", "--problems", "3", "--max-new-tokens", "16",
            "--slices", "nohint,run_tests", "--out", str(out)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"] == ["tiny-qwen3"] and [c["slice"] for c in summary["cells"]] == ["nohint", "run_tests"]
    assert summary["cells"][1]["hint"] == "simple_overwrite_tests"
    assert summary["cells"][0]["command"].startswith("projected-grpo base-rates --model tiny-qwen3")
    for cell in summary["cells"]:
        s = cell["summary"]
        assert s["n"] == 3 and 0 < s["mean_tokens"] <= 16
        for key in ("is_reward_hack_strict", "is_reward_hack_loose", "eq_correct", "gt_correct_hardened",
                    "is_formatted", "truncated"):
            lo, hi = s[key]["ci95"]
            assert lo <= s[key]["rate"] <= hi
    rows = [json.loads(x) for x in (out / "tiny-qwen3" / "run_tests.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["mode"] == "run_tests" and "eq_correct" in r for r in rows)
    assert "| tiny-qwen3 | run_tests |" in (out / "report.md").read_text().replace("  ", " ").replace("  ", " ")
    # finished cells are kept: the same settings read them back without loading a model; other settings redo them
    before = (out / "tiny-qwen3" / "nohint.jsonl").read_bytes()

    def no_load(*a, **k):
        raise AssertionError("a finished cell was sampled again")

    monkeypatch.setattr("projected_grpo.experiments.base_rates.load_model", no_load)
    settings = BaseRateSettings(str(default_benchmark_path().resolve()), 3, max_new_tokens=16)
    again = base_rates("tiny-qwen3", ["nohint", "run_tests"], settings, out)
    assert again["run_tests"] == summary["cells"][1]["summary"]
    assert (out / "tiny-qwen3" / "nohint.jsonl").read_bytes() == before
    with pytest.raises(AssertionError, match="sampled again"):
        base_rates("tiny-qwen3", ["nohint"], BaseRateSettings(str(default_benchmark_path().resolve()), 3, max_new_tokens=17),
                   out)


def test_report_puts_settings_that_differ_in_columns_and_reads_only_cells(tmp_path, benchmark):
    data = str(default_benchmark_path())
    for model, cap in (("tiny-qwen3", 8), ("tiny-llama", 12)):
        base_rates(model, ["nohint"], BaseRateSettings(data, 2, max_new_tokens=cap), tmp_path)
    (tmp_path / "a-run").mkdir()
    (tmp_path / "a-run" / "config.json").write_text("{}")  # not a cell: ignored
    text = (write_report(tmp_path)).read_text()
    assert "| max_new_tokens |" in text.replace("  ", " ").replace("  ", " ")
    assert "temperature = 0.7" in text and "max_new_tokens = " not in text
    assert [c["model"] for c in json.loads((tmp_path / "summary.json").read_text())["cells"]] == ["tiny-llama", "tiny-qwen3"]


def test_bad_slices_and_settings_fail_before_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown slice 'bogus'"):
        check_slices(["nohint", "bogus"])
    assert check_slices(["run_tests", "nohint", "run_tests"]) == ["run_tests", "nohint"]
    assert model_dirname("org/x") == "org_x" and model_dirname("..") == "model"
    with pytest.raises(ConfigError, match="--problems 0"):
        BaseRateSettings("x.jsonl", 0)
    with pytest.raises(ConfigError, match="--temperature"):
        BaseRateSettings("x.jsonl", temperature=-1)
    with pytest.raises(ConfigError, match="no finished"):
        write_report(tmp_path)
    data = tmp_path / "two.jsonl"  # a valid benchmark file of its own: the check must not need the real one
    data.write_text("".join(json.dumps(r) + "\n" for r in authored_records()[:2]))
    bad = CliRunner().invoke(app, ["base-rates", "--model", "tiny-qwen3", "--slices", "bogus", "--data", str(data),
                                   "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown slice 'bogus'" in bad.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    bad = CliRunner().invoke(app, ["base-rates", "--model", "tiny-qwen3", "--data", str(broken), "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "broken.jsonl" in bad.output and "Traceback" not in bad.output


def test_a_model_that_cannot_load_is_one_clear_error(tmp_path, benchmark):
    bad = CliRunner().invoke(app, ["base-rates", "--model", str(tmp_path / "no-such-model"), "--problems", "1",
                                   "--out", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "cannot load it" in bad.output and "models list" in bad.output
