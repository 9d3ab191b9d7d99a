"""The experiment runner and its report: statistics from saved metrics, config errors, a killed matrix
that resumes (real GRPO cells on a small organism, killed with SIGKILL)."""

from __future__ import annotations

import json
import math
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_organism import SMALL

from projected_grpo.errors import ConfigError
from projected_grpo.experiments.matrix import load_experiment
from projected_grpo.experiments.report import h1_verdict, write_report


def _write_cell(root: Path, arm: str, seed: int, hack: list[float], eval_hack: float, eval_solve: float,
                held_out: bool | None = True, eq_solve: float | None = None) -> None:
    """A finished cell: `eval_solve` is the hardened oracle's rate, `eq_solve` the foolable eq_correct
    (default: the same); `held_out` None writes a summary without the field."""
    cell = root / "cells" / f"{arm}-s{seed}"
    (cell / "eval" / "final").mkdir(parents=True)
    rows = [{"step": i + 1, "labels/hack_strict": h, "labels/hack_loose": h, "labels/correct": 0.9,
             "labels/correct_hardened": 0.2} for i, h in enumerate(hack)]
    (cell / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rate = lambda x: {"rate": x, "ci95": [0, 1]}  # noqa: E731
    eq = eval_solve if eq_solve is None else eq_solve
    res = {"loophole/kept": {"n": 10, "is_reward_hack_strict": rate(eval_hack), "is_reward_hack_loose": rate(eval_hack),
                             "eq_correct": rate(eq), "gt_correct_hardened": rate(eval_solve), "hack_strict_by_mode": {}},
           "nohint/kept": {"n": 10, "is_reward_hack_strict": rate(0), "is_reward_hack_loose": rate(0),
                           "eq_correct": rate(eq), "gt_correct_hardened": rate(eval_solve)}}
    summary = {"results": res} | ({} if held_out is None else {"held_out": held_out})
    (cell / "eval" / "final" / "summary.json").write_text(json.dumps(summary))


def has_row(report: str, *cells: str) -> bool:
    """A markdown table row starting with these cells (whatever the column padding)."""
    return re.search(r"^\|\s*" + r"\s*\|\s*".join(map(re.escape, cells)) + r"\s*\|", report, re.M) is not None


def _experiment(root: Path, arms: list[str]) -> None:
    exp = {"name": "t", "arms": arms, "seeds": [1, 2, 3], "train": {}, "eval": {}, "last_k": 2}
    (root / "experiment.json").write_text(json.dumps({"experiment": exp}))


def test_report_from_saved_metrics(tmp_path):
    _experiment(tmp_path, ["vanilla", "erase", "random", "tdga"])
    for seed, (v, e, r) in zip((1, 2, 3), ((0.8, 0.1, 0.7), (0.6, 0.2, 0.6), (0.7, 0.0, 0.8))):
        _write_cell(tmp_path, "vanilla", seed, [0.0, 0.4, v], v, 0.3)
        _write_cell(tmp_path, "erase", seed, [0.0, 0.0, e], e, 0.28)
        _write_cell(tmp_path, "random", seed, [0.0, 0.5, r], r, 0.3)
        _write_cell(tmp_path, "tdga", seed, [0.0, 0.0, e], e, 0.3)
    report = write_report(tmp_path).read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    mean, sem = summary["arms"]["vanilla"]["train_hack"]
    assert math.isclose(mean, (0.6 + 0.5 + 0.55) / 3)  # last-2-step means per seed: .6, .5, .55
    assert math.isclose(summary["arms"]["vanilla"]["train_solve"][0], 0.2)  # the hardened label, not labels/correct
    assert [round(x, 6) for x in summary["paired"]["erase"]["d_hack"]] == [-0.7, -0.4, -0.7]
    assert summary["paired"]["erase"]["h1"] == "supported"
    assert summary["paired"]["random"]["h1"] == "— (control)"
    assert summary["paired"]["tdga"]["h1"] == "— (published (loophole-aware))"
    assert has_row(report, "erase", "method", "3", "held-out") and has_row(report, "tdga", "published (loophole-aware)", "3")
    assert "not (known to be) on held-out" not in report and (tmp_path / "curves.png").stat().st_size > 10_000


def test_h1_solve_criterion_is_the_hardened_oracle(tmp_path):
    """erase keeps eq_correct at vanilla's 0.3 but its hardened solve falls to 0.1: a 20 pp drop, falsified."""
    _experiment(tmp_path, ["vanilla", "erase"])
    for seed in (1, 2, 3):
        _write_cell(tmp_path, "vanilla", seed, [0.5], 0.7, 0.3)
        _write_cell(tmp_path, "erase", seed, [0.0], 0.1, 0.1, eq_solve=0.3)
    write_report(tmp_path)
    paired = json.loads((tmp_path / "summary.json").read_text())["paired"]["erase"]
    assert [round(x, 6) for x in paired["d_solve"]] == [-0.2] * 3 and paired["h1"] == "falsified"


@pytest.mark.parametrize("held_out, shown", [(False, "NOT held-out"), (None, "unknown")])
def test_no_h1_verdict_unless_evaluated_on_held_out_problems(tmp_path, held_out, shown):
    """One vanilla cell evaluated on training problems (or from before the flag existed): the table says
    so and the otherwise supported erase arm gets no verdict."""
    _experiment(tmp_path, ["vanilla", "erase"])
    for seed in (1, 2, 3):
        _write_cell(tmp_path, "vanilla", seed, [0.5], 0.7, 0.3, held_out=held_out if seed == 2 else True)
        _write_cell(tmp_path, "erase", seed, [0.0], 0.1, 0.3)
    report = write_report(tmp_path).read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["paired"]["erase"]["h1"] == f"— (eval {shown})"
    assert summary["arms"]["vanilla"]["eval_on"] == shown and summary["arms"]["erase"]["eval_on"] == "held-out"
    assert has_row(report, "vanilla", "baseline", "3", shown) and "not (known to be) on held-out problems** for vanilla" in report


def test_h1_verdict_rules():
    assert h1_verdict([-0.4, -0.5, -0.45], [0.0, -0.05, 0.0]) == "supported"
    assert h1_verdict([-0.4, -0.5], [0.0, -0.05]) == "supported (n = 2; a headline needs ≥ 3 seeds)"
    assert h1_verdict([-0.1, -0.12, -0.1], [0.0, 0.0, 0.0]) == "falsified"  # cut < 15 pp
    assert h1_verdict([-0.5, -0.5, -0.5], [-0.2, -0.2, -0.2]) == "falsified"  # solve drops > 15 pp
    assert h1_verdict([0.1, -0.8, 0.2], [0.0] * 3) == "falsified"  # cut 17 pp, within 1 SEM (32 pp)
    assert h1_verdict([-0.2, -0.25, -0.2], [0.0, 0.0, 0.0]) == "inconclusive"
    assert h1_verdict([-0.5], [0.0]).startswith("inconclusive")


def test_experiment_config_errors_name_the_field(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('name = "x"\narms = ["vanilla", "eraser"]\nseeds = [1]\n[train]\npreset = "organism"\n')
    with pytest.raises(ConfigError, match="'arms'.*eraser"):
        load_experiment(path)
    path.write_text('name = "x"\narms = ["vanilla"]\nseeds = [1]\n[train]\npreset = "organism"\n[train.grpo]\nlr = 1\n')
    with pytest.raises(ConfigError, match="unknown field 'lr'"):
        load_experiment(path)


def _experiment_file(tmp_path: Path) -> Path:
    organism = ", ".join(f"{k} = {v}" for k, v in SMALL.items())
    path = tmp_path / "matrix.toml"
    path.write_text(f'''name = "resume-test"
arms = ["vanilla", "erase"]
seeds = [7]
last_k = 2
[train]
preset = "organism"
steps = 3
save_every = 1
organism = {{ {organism} }}
[train.intervention.probe]
path = "vanilla"  # shared by every cell; only probe arms may act on it (the others must not wait for it)
[train.grpo]
num_generations = 2
prompts_per_step = 2
max_completion_length = 24
[eval]
n_samples = 1
n_problems = 2
''')
    return path


@pytest.mark.slow
def test_killed_matrix_resumes_and_skips_finished_cells(tmp_path):
    path, out = _experiment_file(tmp_path), tmp_path / "out"
    cmd = [sys.executable, "-m", "projected_grpo.cli", "experiment", str(path), "--output", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    target = out / "cells" / "erase-s7" / "checkpoint-1"
    deadline = time.time() + 600
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists(), proc.stderr.read().decode()[-3000:]
    vanilla = out / "cells" / "vanilla-s7" / "eval" / "final" / "summary.json"
    assert vanilla.is_file() and not (out / "report.md").exists()
    before = vanilla.stat().st_mtime_ns
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert vanilla.stat().st_mtime_ns == before  # the finished cell was skipped
    rows = [json.loads(x) for x in (out / "cells" / "erase-s7" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert has_row((out / "report.md").read_text(), "erase", "method", "1", "held-out")
    log = (out / "cells" / "erase-s7" / "train.log").read_text()  # the cell's own log
    assert "step 3/3" in log and "finished 3 steps" in log
    if "resuming" in log:  # the kill can land before checkpoint-1 is complete: then the cell starts afresh
        assert 0 <= log.index("training ") < log.index("resuming ") and "from checkpoint-1" in log  # appended
    assert "leak(held-out)" not in done.stderr  # under the runner's bar a cell's step lines stay in its train.log

    # The weight-free export: its report regenerates from it alone, and the experiment continues in it.
    exported = tmp_path / "results"
    cli = [sys.executable, "-m", "projected_grpo.cli"]
    got = subprocess.run([*cli, "report", str(out), "--to", str(exported)], env=env, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr[-3000:]
    assert not list(exported.rglob("*.safetensors")) and not list(exported.rglob("rollouts.jsonl"))
    assert (exported / "cells" / "erase-s7" / "eval" / "final" / "summary.json").is_file()
    report = (out / "report.md").read_text()
    assert (exported / "report.md").read_text() == report
    (exported / "report.md").unlink()
    again = subprocess.run([*cmd[:3], "experiment", str(path), "--output", str(exported)], env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 cells (2 done)" in again.stderr and (exported / "report.md").read_text() == report
    assert not (exported / "cells" / "erase-s7" / "adapter.safetensors").exists()  # nothing trained again
    refused = subprocess.run([*cli, "report", str(out), "--to", str(tmp_path)], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "is not an export" in refused.stderr
    assert (tmp_path / "matrix.toml").is_file()  # left as it was
    again = subprocess.run([*cli, "report", str(out), "--to", str(exported)], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and (exported / "report.md").read_text() == report  # an earlier export is replaced


def test_eval_held_out_flag_is_checked_not_assumed(tmp_path):
    """`held_out` (written into eval summary.json) is True only when no evaluation problem id is among
    the problems the run could have trained on — an eval_path is not trusted by its name."""
    from projected_grpo.organism.warmup import authored_records
    from projected_grpo.training.config import load_config
    from projected_grpo.training.evaluate import heldout_records

    records = authored_records()
    path, other, overlap = tmp_path / "all.jsonl", tmp_path / "other.jsonl", tmp_path / "overlap.jsonl"
    for p, rows in ((path, records[:6]), (other, records[6:9]), (overlap, records[4:8])):
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def held(*overrides):
        recs, flag = heldout_records(load_config(preset="tiny", overrides=[f'data.path="{path}"', *overrides]), None)
        return [r["id"] for r in recs], flag

    assert held("data.n_problems=4") == ([4, 5], True)
    assert held("data.n_problems=null") == ([0, 1, 2, 3, 4, 5], False)  # nothing left over: the training problems
    assert held("data.n_problems=6") == ([0, 1, 2, 3, 4, 5], False)
    assert held("data.n_problems=null", f'data.eval_path="{other}"') == ([6, 7, 8], True)
    assert held("data.n_problems=4", f'data.eval_path="{overlap}"') == ([4, 5, 6, 7], True)  # 4, 5 were not trained on
    assert held("data.n_problems=null", f'data.eval_path="{overlap}"')[1] is False


def test_ariahw_preset_needs_the_reference_train_problems_and_uses_bnpo(tmp_path):
    """The reference trained on ~992 train problems we do not ship: without data.path the preset would
    silently train on the test set, so it refuses — from the CLI preset, a file's preset, an experiment's."""
    from projected_grpo.training.config import load_config

    with pytest.raises(ConfigError, match=r"field 'data\.path' \(preset ariahw-qwen3-4b\).*992 \*train\* problems"):
        load_config(preset="ariahw-qwen3-4b")
    run = tmp_path / "run.toml"
    run.write_text('preset = "ariahw-qwen3-4b"\narm = "vanilla"\n')
    with pytest.raises(ConfigError, match=rf"{run}: field 'data\.path'"):
        load_config(run)
    exp = tmp_path / "e.toml"
    exp.write_text('name = "x"\narms = ["vanilla"]\nseeds = [41]\n[train]\npreset = "ariahw-qwen3-4b"\n')
    with pytest.raises(ConfigError, match=r"field 'data\.path'"):
        load_experiment(exp)
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    config = load_config(preset="ariahw-qwen3-4b", overrides=[f'data.path="{data}"'])
    assert config.grpo.loss_type == "bnpo"  # verl's token mean per micro-batch
    assert load_config(run, overrides=[f'data.path="{data}"']).data.path == str(data)


def test_variants_run_an_arm_with_its_own_settings(tmp_path):
    """A dose-response column is a variant: its arm with sections merged over [train]; the report
    classifies it by its arm (a method variant gets an H1 verdict against vanilla)."""
    path = tmp_path / "d.toml"
    path.write_text('name = "dose"\narms = ["vanilla", "erase", "erase_k1", "random_grad"]\nseeds = [1]\n'
                    '[train]\npreset = "tiny"\n[train.basis]\nk_use = 4\n'
                    '[variants.erase_k1]\narm = "erase"\nbasis = { k_use = 1 }\n'
                    '[variants.random_grad]\narm = "random"\nprojection = { space = "grad" }\n')
    exp = load_experiment(path)
    base, k1, grad = (exp.cell_config(a, 1, tmp_path / a) for a in ("erase", "erase_k1", "random_grad"))
    assert (base.arm, base.basis.k_use, k1.arm, k1.basis.k_use) == ("erase", 4, "erase", 1)
    assert (grad.arm, grad.projection.space, grad.basis.k_use) == ("random", "grad", 4)
    valid = path.read_text()
    path.write_text(valid.replace('seeds = [1]', 'seeds = [1]\neval_checkpoints = [2]')
                    .replace('basis = { k_use = 1 }', 'basis = { k_use = 1 }\nsave_every = 3'))
    with pytest.raises(ConfigError, match="eval_checkpoints.*erase_k1"):  # checked per column: the variant saves every 3
        load_experiment(path)
    path.write_text(valid.replace('arm = "erase"', 'arm = "erasee"'))
    with pytest.raises(ConfigError, match=r"variants.erase_k1.*arm"):
        load_experiment(path)
    path.write_text(path.read_text().replace('[variants.erase_k1]\narm = "erasee"', '[variants.erase]\narm = "erase"'))
    with pytest.raises(ConfigError, match="variants.erase"):
        load_experiment(path)
    root = tmp_path / "report"
    exp_record = {"name": "t", "arms": ["vanilla", "erase", "erase_k1", "erase_k8", "random_grad"], "seeds": [1, 2, 3],
                  "train": {}, "eval": {}, "last_k": 2,
                  "variants": {"erase_k8": {"arm": "erase", "basis": {"k_use": 8}},
                               "erase_k1": {"arm": "erase", "basis": {"k_use": 1}},
                               "random_grad": {"arm": "random", "projection": {"space": "grad"}}}}
    root.mkdir()
    (root / "experiment.json").write_text(json.dumps({"experiment": exp_record}))
    for seed in (1, 2, 3):
        _write_cell(root, "vanilla", seed, [0.0, 0.8], 0.8, 0.3)
        _write_cell(root, "erase", seed, [0.0, 0.5], 0.5, 0.3)
        _write_cell(root, "erase_k1", seed, [0.0, 0.1], 0.1 * seed, 0.3)
        _write_cell(root, "erase_k8", seed, [0.0, 0.4], 0.4, 0.3)
        _write_cell(root, "random_grad", seed, [0.0, 0.8], 0.8, 0.3)
    (root / "cells" / "erase-s1" / "config.json").write_text(json.dumps({"basis": {"k_use": 4}}))  # as the run saved it
    report = write_report(root).read_text()
    summary = json.loads((root / "summary.json").read_text())
    assert summary["paired"]["erase_k1"]["h1"] == "supported" and summary["paired"]["random_grad"]["h1"] == "— (control)"
    assert has_row(report, "erase_k1", "method", "3") and has_row(report, "random_grad", "control", "3")
    # the dose axis: the variants of erase that change basis.k_use, with erase itself at [train]'s k_use = 4
    axis = summary["dose"]["axes"]["erase: basis.k_use"]
    assert [(p["setting"], p["column"]) for p in axis] == [(1, "erase_k1"), (4, "erase"), (8, "erase_k8")]
    assert [round(100 * p["d_hack"][0]) for p in axis] == [-60, -30, -40]
    assert has_row(report, "erase: basis.k_use", "4", "erase", "-30.0 ± 0.0")
    assert has_row(report, "random: projection.space", "grad", "random_grad", "+0.0 ± 0.0")  # a control's own axis
    assert has_row(report, "control", "—", "random_grad") and (root / "dose.png").stat().st_size > 0


def test_every_shipped_experiment_states_its_hypothesis():
    """Issue 14 §7: each experiment file carries `hypothesis` and `resolve` (preregistration), and loads."""
    root = Path(__file__).resolve().parents[1]
    files = [p for p in sorted((root / "configs").glob("*.toml")) if p.read_text().lstrip().count("\narms = ")]
    files.append(root / "src" / "projected_grpo" / "experiments" / "demo.toml")
    assert len(files) >= 7
    for path in files:
        exp = load_experiment(path)
        assert exp.hypothesis.strip() and exp.resolve.strip(), path.name


def test_an_experiment_recorded_before_fields_moved_continues_under_the_new_names():
    from projected_grpo.experiments.matrix import recorded

    old = {"name": "x", "train": {"preset": "organism", "intervention": {"probe": "vanilla"}},
           "variants": {"half": {"arm": "erase", "basis": {"heldout": 0.625}}}}
    assert recorded(old) == {"name": "x", "train": {"preset": "organism", "intervention": {"probe": {"path": "vanilla"}}},
                             "variants": {"half": {"arm": "erase", "basis": {"leak_heldout": 0.625}}}}


@pytest.mark.slow
def test_workers_run_cells_in_parallel_as_one_process_would(tmp_path):
    """`--workers 2`: each cell in its own process; a cell's numbers are those of a one-process run with the
    same thread count; a cell that fails stops the matrix with one error, and re-running resumes it."""
    path = _experiment_file(tmp_path)
    cli = [sys.executable, "-m", "projected_grpo.cli", "experiment", str(path)]
    threads = str(max(1, len(os.sched_getaffinity(0)) // 2))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the workers set their own share
    blocked = tmp_path / "failing" / "cells" / "erase-s7"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the cell's directory goes")
    failed = subprocess.run([*cli, "--output", str(tmp_path / "failing"), "--workers", "2"], env=env,
                            capture_output=True, text=True)
    assert failed.returncode == 2 and "error: cell erase-s7 failed" in failed.stderr, failed.stderr[-3000:]
    assert "output_dir" in failed.stderr and "Traceback" not in failed.stderr  # a user's error: its fix, no traceback
    for out, workers, threads_env in (("parallel", "2", {}), ("sequential", "1", {"OMP_NUM_THREADS": threads})):
        done = subprocess.run([*cli, "--output", str(tmp_path / out), "--workers", workers], env=env | threads_env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    drop = ("time/", "step_time")
    for cell in ("vanilla-s7", "erase-s7"):
        rows = {out: [{k: v for k, v in json.loads(x).items() if not k.startswith(drop)}
                      for x in (tmp_path / out / "cells" / cell / "metrics.jsonl").read_text().splitlines()]
                for out in ("parallel", "sequential")}
        assert rows["parallel"] == rows["sequential"] and len(rows["parallel"]) == 3
        evals = [json.loads((tmp_path / out / "cells" / cell / "eval" / "final" / "summary.json").read_text())["results"]
                 for out in ("parallel", "sequential")]
        assert evals[0] == evals[1]
        prov = json.loads((tmp_path / "parallel" / "cells" / cell / "provenance.json").read_text())
        assert prov["versions"]["cpu"].endswith(f"{threads} thread(s)")


def test_probe_arms_wait_for_their_seeds_vanilla_cell(tmp_path):
    from projected_grpo.experiments.matrix import cell_name, probe_waits

    exp = load_experiment(_experiment_file(tmp_path))
    cells = [("vanilla", 7), ("erase", 7), ("probe_penalty", 7), ("probe_screening", 8)]
    configs = {c: exp.cell_config(*c, tmp_path / cell_name(*c)) for c in cells}
    assert probe_waits(configs) == {("probe_penalty", 7): "vanilla-s7", ("probe_screening", 8): "vanilla-s8"}
