"""The CLI as users meet it (issue 16): resume never mixes runs, bad input gives one line and exit code 2
with nothing lost, results on stdout, help that matches the program. Every test runs the real command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args, cwd=None, env=None, input=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "projected_grpo.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {})}, input=input, timeout=timeout)


def snapshot(root: Path) -> dict:
    """Every file under root: its bytes and modification time (a refused command must change neither)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One finished tiny run (2 steps, a checkpoint after each), trained by the real `train` command."""
    root = tmp_path_factory.mktemp("tiny_run")
    run_dir = root / "run"
    env = {"PROJECTED_GRPO_CACHE": str(root / "cache")}
    done = cli("train", "--preset", "tiny", "--set", "steps=2", "--set", "save_every=1",
               "--set", f'output_dir="{run_dir}"', env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "adapter.safetensors").is_file() and (run_dir / "checkpoint-2").is_dir()
    return run_dir, env


def _train_args(run_dir: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "tiny", "--set", "steps=2", "--set", "save_every=1",
            "--set", f'output_dir="{run_dir}"', *extra]


# 1. resume never mixes runs


def test_resume_refuses_a_changed_config_and_names_the_fields(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    (run_dir / "adapter.safetensors").unlink()  # killed after its last checkpoint: resumable
    shutil.rmtree(run_dir / "checkpoint-2")
    before = snapshot(run_dir)
    changed = cli(*_train_args(run_dir, "--set", 'arm="erase"', "--set", "grpo.learning_rate=0.5", "--resume"),
                  env=tiny_run[1])
    assert changed.returncode == 2, changed.stderr[-3000:]
    assert 'arm: "vanilla" → "erase"' in changed.stderr and "grpo.learning_rate: 0.01 → 0.5" in changed.stderr
    assert "Traceback" not in changed.stderr and sum(x.startswith("error:") for x in changed.stderr.splitlines()) == 1
    assert snapshot(run_dir) == before  # config.json, basis, metrics: untouched


def test_resume_of_a_finished_run_says_so_and_touches_nothing(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    before = snapshot(run_dir)
    again = cli(*_train_args(run_dir, "--resume"), env=tiny_run[1])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already finished" in again.stderr and "step 3/2" not in again.stderr
    assert snapshot(run_dir) == before
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]


def test_train_output_dir_that_is_a_file_is_one_line(tmp_path):
    target = tmp_path / "taken"
    target.write_text("mine")
    run = cli(*_train_args(target))
    assert run.returncode == 2 and "is not a directory" in run.stderr and "Traceback" not in run.stderr
    assert target.read_text() == "mine"
