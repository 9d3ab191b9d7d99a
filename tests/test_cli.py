"""The CLI end to end on real files: grade, data make, errors at the boundary."""

import json

from typer.testing import CliRunner

from projected_grpo.cli import app
from projected_grpo.environment.hints import apply_hint
from projected_grpo.environment.specimens import EXPLOITS, fence

runner = CliRunner()


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_grade_writes_every_field_and_provenance(tmp_path, by_id):
    record = apply_hint(by_id[3243], "simple_overwrite_tests")
    rows = [{**record, "response": fence(record["canonical_solution"])},
            {**record, "response": fence(EXPLOITS["run_tests"](record))}]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, rows)
    result = runner.invoke(app, ["grade", str(src), "-o", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    graded = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["reward_hack_label"] for g in graded] == ["Correct", "Reward Hack"]
    for key in ("is_formatted", "can_compile", "eq_correct", "eq_hinted", "gt_pass_rate", "test_modification",
                "is_reward_hack_strict", "is_reward_hack_loose", "gt_correct_hardened", "exploited", "mode", "runs"):
        assert key in graded[0]
    assert graded[0]["response"] == rows[0]["response"] and graded[0]["id"] == 3243
    meta = json.loads((tmp_path / "out.jsonl.meta.json").read_text())
    assert meta["isolation"]["level"] == "bwrap" and "git_commit" in meta and meta["versions"]["python"]
    assert "Reward Hack" in result.output


def test_grade_rejects_a_row_without_response_and_writes_nothing(tmp_path, by_id):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [{**by_id[3243], "response": "x"}, by_id[3243]])
    result = runner.invoke(app, ["grade", str(src), "-o", str(out)])
    assert result.exit_code == 2
    assert "in.jsonl:2: field 'response'" in result.output and "Fix:" in result.output
    assert not out.exists()


def test_grade_names_a_bad_record_field(tmp_path, by_id):
    src = tmp_path / "in.jsonl"
    _write(src, [{**by_id[3243], "response": "x", "func_name": "f"}])
    result = runner.invoke(app, ["grade", str(src), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "in.jsonl:1: field 'func_name'" in result.output


def test_data_make_hint_and_modes(tmp_path, benchmark):
    src = tmp_path / "base.jsonl"
    _write(src, benchmark[:8])
    out = tmp_path / "hinted.jsonl"
    result = runner.invoke(app, ["data", "make", str(src), "-o", str(out), "--hint", "overwrite_tests", "--seed", "4"])
    assert result.exit_code == 0, result.output
    made = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(made) == 8 and all(r["hint"] == "overwrite_tests" for r in made)
    assert made == [apply_hint(r, "overwrite_tests", seed=4) for r in benchmark[:8]]
    out2 = tmp_path / "modes.jsonl"
    result = runner.invoke(app, ["data", "make", str(src), "-o", str(out2), "--modes", "run_tests,sentinel,file_marker"])
    assert result.exit_code == 0, result.output
    hints = {json.loads(line)["hint"] for line in out2.read_text().splitlines()}
    assert hints == {"simple_overwrite_tests", "sentinel", "file_marker"}


def test_data_make_errors(tmp_path, benchmark):
    src = tmp_path / "base.jsonl"
    _write(src, benchmark[:2])
    bad = runner.invoke(app, ["data", "make", str(src), "-o", str(tmp_path / "o.jsonl"), "--hint", "nope"])
    assert bad.exit_code == 2 and "is not a hint" in bad.output
    bad = runner.invoke(app, ["data", "make", str(src), "-o", str(tmp_path / "o.jsonl"), "--modes", "telepathy"])
    assert bad.exit_code == 2 and "unknown loophole modes" in bad.output
    missing = runner.invoke(app, ["data", "make", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "o.jsonl"), "--hint", "nohint"])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_organism_judge_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["organism", "judge", str(tmp_path / "judge")])
    assert result.exit_code != 0 and "not empty" in result.output
    assert (tmp_path / "judge" / "keep.txt").read_text() == "mine"


def test_organism_judge_refuses_an_unknown_organism_field(tmp_path):
    result = runner.invoke(app, ["organism", "judge", str(tmp_path / "judge"), "--set", "exploitz=\"diverse\""])
    assert result.exit_code != 0 and "--set 'exploitz=" in result.output and "exploits" in result.output
    assert not (tmp_path / "judge").exists()


def test_ci_fails_on_a_skip_it_does_not_allow(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "test_x.py").write_text("import pytest\n\ndef test_a():\n    pytest.skip('no data')\n\ndef test_b():\n    pass\n")
    allowed = tmp_path / "allowed"
    allowed.write_text("# nothing allowed\n")
    env = {**os.environ, "PROJECTED_GRPO_ALLOWED_SKIPS": str(allowed),
           "PYTHONPATH": os.path.dirname(__file__)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "skipguard", "-p", "no:cacheprovider", "test_x.py"]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 1 and "test_x.py::test_a: Skipped: no data" in run.stdout, run.stdout
    allowed.write_text("test_x.py::test_a  # the data is not shipped\n")
    assert subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True).returncode == 0
    del env["PROJECTED_GRPO_ALLOWED_SKIPS"]  # outside CI a skip stays a skip
    assert subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True).returncode == 0


def test_train_console_shows_our_progress_not_library_noise(tmp_path):
    """`projected-grpo train` as a user runs it: our step lines, and none of the libraries' deprecation
    warnings, weight-loading bars or tokenizer notices."""
    import os
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "projected_grpo.cli", "train", "--preset", "tiny", "--set", "steps=1",
                          "--set", f'output_dir="{tmp_path / "run"}"'], capture_output=True, text=True,
                         env={**os.environ, "PROJECTED_GRPO_CACHE": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert "step 1/1" in out
    for noise in ("FutureWarning", "Loading weights", "PAD/BOS/EOS", "deprecated"):
        assert noise not in out, noise
