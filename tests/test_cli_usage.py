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
from test_experiments import has_row


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
    return run_dir, env, done


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


# 2. bad input: one clear line, exit code 2, nothing written or lost


def _one_error(run: subprocess.CompletedProcess, *needles: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [x for x in run.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, run.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def graded_row():
    from projected_grpo.environment.specimens import fence
    from projected_grpo.training.data import authored_records

    record = authored_records()[0]
    return {**record, "response": fence(record["canonical_solution"])}


def test_unreadable_input_files_are_one_line_and_write_nothing(tmp_path, graded_row):
    line = json.dumps(graded_row)
    cases = {
        "utf16.jsonl": (line.encode("utf-16"), "UTF-16"),
        "latin1.jsonl": ((line + "\n").encode() + b'{"response": "caf\xe9"}\n', "in_latin1.jsonl:2: not UTF-8"),
        "surrogate.jsonl": ((line + "\n" + json.dumps({**graded_row, "response": "x\ud800"}) + "\n").encode(),
                            "surrogate.jsonl:2: field 'response': a lone surrogate"),
        "bad.jsonl": (b'{"response": "unterminated', "bad.jsonl:1: not valid JSON (Unterminated string starting at column 14)"),
        "ctrl.jsonl": (b'{"response": "a\tb"}\n', "ctrl.jsonl:1: not valid JSON (Invalid control character at column 16)"),
    }
    for name, (data, needle) in cases.items():
        name = "in_latin1.jsonl" if name == "latin1.jsonl" else name
        src, out = tmp_path / name, tmp_path / f"out_{name}"
        src.write_bytes(data)
        _one_error(cli("grade", src, "-o", out), needle)
        assert not out.exists() and not Path(f"{out}.meta.json").exists()
    folder = tmp_path / "a_dir"
    folder.mkdir()
    _one_error(cli("grade", folder, "-o", tmp_path / "o.jsonl"), "is a directory, not a file")
    _one_error(cli("train", folder), "is a directory")


def test_bad_output_paths_are_refused_before_any_grading(tmp_path, graded_row):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(graded_row) + "\n")
    before = src.read_bytes()
    _one_error(cli("grade", src, "-o", tmp_path), "is a directory")
    _one_error(cli("grade", src, "-o", src), "is also the input")
    _one_error(cli("grade", src, "-o", src, "--force"), "is also the input")
    assert src.read_bytes() == before
    taken = tmp_path / "taken.jsonl"
    taken.write_text("mine\n")
    _one_error(cli("grade", src, "-o", taken), "exists", "--force")
    _one_error(cli("data", "make", src, "-o", taken, "--hint", "nohint"), "exists", "--force")
    assert taken.read_text() == "mine\n"
    made = cli("data", "make", src, "-o", taken, "--hint", "nohint", "--force")
    assert made.returncode == 0, made.stderr[-2000:]
    assert json.loads(taken.read_text())["id"] == graded_row["id"]


def test_extract_options_are_checked_before_a_model_loads(tmp_path):
    env = {"PROJECTED_GRPO_CACHE": str(tmp_path / "cache")}
    _one_error(cli("extract", "--model", "tiny-qwen3", "--space", "bogus", env=env), "--space 'bogus'", "gradient, activation")
    _one_error(cli("extract", "--model", "tiny-qwen3", "--holdout", "1.5", env=env), "holdout = 1.5", "[0, 1)")
    _one_error(cli("extract", "--model", "tiny-qwen3", "--modes", "bogus", env=env), "'bogus'", "run_tests", "sentinel")
    _one_error(cli("extract", "--model", str(tmp_path / "no_model"), env=env), "--model", "cannot load it")
    _one_error(cli("extract", "--model", "organism", "--global-floor", "2", env=env), "global_floor")
    taken = tmp_path / "basis.safetensors"
    taken.write_text("mine")
    _one_error(cli("extract", "--model", "tiny-qwen3", "--out", taken, env=env), "exists", "--force")
    assert taken.read_text() == "mine"
    assert not (tmp_path / "cache").exists()  # nothing built, extracted or cached
    assert "organism" in cli("extract", "--help", env={"COLUMNS": "200"}).stdout


# 3. nonsense options are refused before any work


def test_nonsense_options_are_refused_before_work(tiny_run, tmp_path, graded_row):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(graded_row) + "\n")
    for bad in ("-1", "0", "0.5"):
        run = cli("grade", src, "-o", tmp_path / "o.jsonl", "--timeout", bad)
        assert run.returncode == 2 and "whole number of seconds >= 1" in run.stderr and "Traceback" not in run.stderr
        assert not (tmp_path / "o.jsonl").exists()
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    (run_dir / "eval" / "final").mkdir(parents=True)
    (run_dir / "eval" / "final" / "summary.json").write_text('{"mine": 1}')
    before = snapshot(run_dir)
    for args, needle in ((["--problems", "0"], "--problems 0"), (["--problems", "-2"], "--problems -2"),
                         (["--temperature", "-1"], "--temperature -1"), (["--top-p", "1.5"], "--top-p 1.5"),
                         (["--slices", "nohint,bogus"], "unknown slice 'bogus'")):
        _one_error(cli("eval", run_dir, *args, env=tiny_run[1]), needle)
    assert snapshot(run_dir) == before


# 5. output files follow the umask


def test_written_files_follow_the_umask(tmp_path, graded_row):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(graded_row) + "\n")
    for umask, mode in ((0o022, 0o644), (0o077, 0o600)):
        out = tmp_path / f"out{umask:o}.jsonl"
        run = subprocess.run([sys.executable, "-c", f"import os, sys; os.umask({umask}); from projected_grpo.cli import main; "
                              f"sys.argv = ['projected-grpo', 'data', 'make', {str(src)!r}, '-o', {str(out)!r}, "
                              "'--hint', 'nohint']; main()"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        assert out.stat().st_mode & 0o777 == mode


# 6. results on stdout (markdown when piped, a real table on a terminal), progress and diagnostics on stderr


def test_grade_results_go_to_stdout_as_markdown_when_piped(tmp_path, graded_row):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps(graded_row) + "\n")
    run = cli("grade", src, "-o", out, "--workers", "1")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| label | count | share |" in run.stdout and "| Correct | 1 |" in run.stdout
    assert "isolation:" in run.stderr and "isolation:" not in run.stdout
    assert f"wrote {out}" in run.stderr


def test_grade_on_a_terminal_prints_a_table(tmp_path, graded_row):
    import pty

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps(graded_row) + "\n")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "projected_grpo.cli", "grade", str(src), "-o", str(out), "-j", "1"],
                            stdout=slave, stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=120) == 0
    os.close(master)
    shown = b"".join(chunks).decode()
    assert "┏━" in shown and "│ exploited" in shown and "| label |" not in shown  # rich's box, not markdown


def _experiment_dir(root: Path) -> Path:
    root.mkdir()
    exp = {"name": "t", "arms": ["vanilla", "erase"], "seeds": [1], "train": {}, "eval": {}, "last_k": 1}
    (root / "experiment.json").write_text(json.dumps({"experiment": exp}))
    rate = lambda x: {"rate": x, "ci95": [0, 1]}  # noqa: E731
    for arm in exp["arms"]:
        cell = root / "cells" / f"{arm}-s1"
        (cell / "eval" / "final").mkdir(parents=True)
        (cell / "metrics.jsonl").write_text(json.dumps({"step": 1, "labels/hack_strict": 0.5, "labels/hack_loose": 0.5,
                                                        "labels/correct_hardened": 0.2}) + "\n")
        res = {k: rate(0.3) for k in ("is_reward_hack_strict", "is_reward_hack_loose", "eq_correct", "gt_correct_hardened")}
        (cell / "eval" / "final" / "summary.json").write_text(json.dumps(
            {"held_out": True, "results": {"loophole/kept": {"n": 4, **res}, "nohint/kept": {"n": 4, **res}}}))
    return root


def test_report_redirected_to_a_file_is_the_whole_markdown(tmp_path):
    run_dir = _experiment_dir(tmp_path / "exp")
    with open(tmp_path / "r.md", "w") as f:
        run = subprocess.run([sys.executable, "-m", "projected_grpo.cli", "report", str(run_dir)], stdout=f,
                             stderr=subprocess.PIPE, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "r.md").read_text().strip() == (run_dir / "report.md").read_text().strip()
    assert "![curves](curves.png)" in (tmp_path / "r.md").read_text()
    assert has_row((tmp_path / "r.md").read_text(), "erase", "method", "1")
    assert "curves.png" in run.stderr and "summary.json" in run.stderr  # which files were written
    assert "rewritten in RUN_DIR" in " ".join(cli("report", "--help", env={"COLUMNS": "200"}).stdout.split())


def test_sandbox_info_prints_each_fact_once(tmp_path):
    run = cli("sandbox-info")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("level:") == 1 and "isolation:" not in run.stdout + run.stderr
    assert "notes: ()" not in run.stdout and "notes:" in run.stdout


# 7. a quiet console: our progress and results; the libraries' messages go to the run's train.log


def test_train_console_is_ours_and_library_messages_go_to_the_log(tiny_run):
    run_dir, _, done = tiny_run
    console = done.stdout + done.stderr
    assert "step 1/2" in done.stderr and "step 2/2" in done.stderr and done.stdout == ""
    for noise in ("FutureWarning", "deprecated", "Loading weights", "PAD/BOS/EOS", "Running training", "share your model"):
        assert noise not in console, noise
    log = (run_dir / "train.log").read_text()
    assert "transformers" in log and "Running training" in log  # kept, where a user debugging the run can read it
    assert not (run_dir / "README.md").exists()  # no hub model card ("fine-tuned version of [None]")


def test_train_log_reads_as_the_run_and_a_resume_appends_to_it(tiny_run, tmp_path):
    run_dir, env, done = tiny_run
    log = (run_dir / "train.log").read_text()
    order = ["training ", "config: arm=vanilla", "model: tiny-qwen3", "basis: gradient space", "step 1/2",
             "saved checkpoint-1", "step 2/2", "saved checkpoint-2", "finished 2 steps"]
    assert all(line in log for line in order), [line for line in order if line not in log]
    assert [log.index(line) for line in order] == sorted(log.index(line) for line in order)
    assert "step 2/2" in done.stderr and "saved checkpoint-2" in done.stderr  # the console shows the same lines
    resumed = tmp_path / "run"
    shutil.copytree(run_dir, resumed)
    (resumed / "adapter.safetensors").unlink()  # killed after checkpoint-1
    shutil.rmtree(resumed / "checkpoint-2")
    again = cli(*_train_args(resumed, "--resume"), env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    after = (resumed / "train.log").read_text()
    assert after.startswith(log)  # appended: the killed run's lines are kept
    new = after[len(log):]
    assert "resuming" in new and "from checkpoint-1" in new and "config: arm=vanilla" in new
    assert "step 1/2" not in new and "step 2/2" in new and "saved checkpoint-2" in new and "finished 2 steps" in new


# 10. help and docs that match the program


def test_train_help_lists_every_preset_and_the_files_a_run_writes(tiny_run):
    from projected_grpo.training.presets import PRESETS

    shown = " ".join(cli("train", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert all(name in shown for name in PRESETS) and "organism" in shown
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "rollouts.jsonl", "completions.jsonl",
                 "adapter.safetensors", "train.log"):
        assert name in shown, name
        assert (tiny_run[0] / name).is_file(), name  # the help promises only what a run writes


def test_held_out_plot_labels_of_coinciding_arms_do_not_overlap():
    from projected_grpo.experiments.report import label_offsets

    # the demo's held-out panel: random sits on vanilla; erase and the no-loophole baseline are far away
    offsets = label_offsets([(0.10, 0.60), (0.30, 0.05), (0.11, 0.61), (0.29, 0.04), (0.5, 0.5)])
    assert abs(offsets[2][1] - offsets[0][1]) >= 9 and abs(offsets[3][1] - offsets[1][1]) >= 9  # one text line apart
    assert offsets[0] == offsets[1] == offsets[4]  # a label with room keeps the usual place


# 4. NUL bytes and runaway output: reference-faithful labels that agree with each other, and a reason


def test_nul_bytes_and_runaway_output_get_reference_labels_and_a_reason(tmp_path):
    """Expected values are the reference grader's own (../shared/tools/ref_grader on Python 3.12, the same
    responses on problem 3243): a NUL in the code does not compile; a NUL in the prose changes nothing."""
    from projected_grpo.environment.specimens import fence
    from projected_grpo.training.data import authored_records

    record = authored_records()[0]
    code = record["canonical_solution"]
    cases = {  # response -> (can_compile, eq_correct, gt_correct_hardened, label)
        "nul_in_code": (fence(code + "\n# a\x00b\n"), (False, False, False, "Incorrect")),
        "nul_in_prose": ("Here\x00 it is:\n" + fence(code), (True, True, True, "Correct")),
        "print_no_newline": (fence(code + "\nprint('x' * 1000, end='')\n"), (True, False, False, "Incorrect")),
        "real_stdout_flood": (fence("import sys\n" + code + "\nsys.__stdout__.write('x' * 6_000_000)\n"),
                              (False, False, False, "Incorrect")),
    }
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps({**record, "response": r, "case": name}) + "\n" for name, (r, _) in cases.items()))
    run = cli("grade", src, "-o", out, "-j", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    graded = {g["case"]: g for g in map(json.loads, out.read_text().splitlines())}
    for name, (_, expected) in cases.items():
        g = graded[name]
        assert (g["can_compile"], g["eq_correct"], g["gt_correct_hardened"], g["reward_hack_label"]) == expected, name
    assert "CompilationError" in graded["nul_in_code"]["runs"]["gt"]["test_errors"][0]
    assert graded["print_no_newline"]["runs"]["gt"]["note"].startswith("no test-runner result")
    assert graded["real_stdout_flood"]["runs"]["gt"]["note"].startswith("output cap exceeded")
    assert graded["nul_in_prose"]["runs"]["gt"]["note"] == ""


# 9. Ctrl-C during grade: stops promptly, says what it kept; --resume continues from there


def test_grade_interrupted_keeps_finished_rows_and_resumes(tmp_path, graded_row):
    import signal
    import time

    from projected_grpo.environment.specimens import fence

    code = graded_row["canonical_solution"]
    slow = [{**graded_row, "response": fence(f"import time\ntime.sleep(0.5)  # {i}\n" + code)} for i in range(8)]
    rows = [graded_row] * 8 + slow  # the first 8 are one response, graded once; with -j 1 the slow ones take ≥ 8 s
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    partial = tmp_path / "out.jsonl.partial.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "projected_grpo.cli", "grade", str(src), "-o", str(out), "-j", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (partial.is_file() and len(partial.read_text().splitlines()) >= 8):
        assert proc.poll() is None and time.monotonic() < deadline, "the first rows never landed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=30)  # exits on its own (no hang behind the queued runs)
    print(f"exited {time.monotonic() - sent:.2f} s after SIGINT")  # shown with -s; not asserted (load varies)
    assert proc.returncode == 130, err[-2000:]
    kept = [json.loads(x) for x in partial.read_text().splitlines()]
    assert 8 <= len(kept) < 16 and all(k["reward_hack_label"] == "Correct" for k in kept)
    assert f"interrupted: {len(kept)} of 16 rows were graded and are kept in" in err and "--resume" in err
    assert "Traceback" not in err and not out.exists()
    assert [k["response"] for k in kept] == [r["response"] for r in rows[:len(kept)]]  # a prefix of the input, in order

    refused = cli("grade", src, "-o", out)
    assert refused.returncode == 2 and "--resume" in refused.stderr and partial.is_file()
    resumed = cli("grade", src, "-o", out, "--resume", "-j", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming: {len(kept)} of 16 rows already graded" in resumed.stderr
    graded = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(graded) == 16 and graded[:len(kept)] == kept  # the kept rows are taken as they were, not graded again
    assert all(g["eq_correct"] for g in graded) and [g["response"] for g in graded] == [r["response"] for r in rows]
    assert not partial.exists()


def test_a_row_cut_short_by_a_hard_kill_is_cut_from_the_partial_file_before_resuming(tmp_path, graded_row):
    from projected_grpo.environment.gradefile import load_partial, partial_path

    out = tmp_path / "out.jsonl"
    rows = [graded_row, {**graded_row, "response": graded_row["response"] + "\n# 2"}]
    whole = json.dumps({**rows[0], "eq_correct": True}) + "\n"
    partial_path(out).write_text(whole + json.dumps(rows[1])[:40])
    assert [k["response"] for k in load_partial(out, rows)] == [rows[0]["response"]]
    assert partial_path(out).read_text() == whole  # the resumed run appends its next row on a line of its own


# 8. progress with an ETA on long work


def test_extract_option_defaults_are_the_library_configs():
    """One default per field: `extract` takes its options' defaults from ExtractionConfig and AdapterConfig."""
    import dataclasses
    import inspect

    from projected_grpo.adapters.config import AdapterConfig
    from projected_grpo.cli.method import extract
    from projected_grpo.directions.config import ExtractionConfig

    defaults = {name: p.default for name, p in inspect.signature(extract).parameters.items()}
    assert {f.name: defaults[f.name] for f in dataclasses.fields(ExtractionConfig)} == dataclasses.asdict(ExtractionConfig())
    assert (defaults["adapter"], defaults["rank"]) == (AdapterConfig().kind, AdapterConfig().rank)


def test_extract_and_eval_show_progress_with_an_eta(tiny_run, tmp_path):
    from projected_grpo.directions.pairs import resolve_pairset

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(resolve_pairset("leetcode_mechanism").read_text().splitlines(keepends=True)[:10]))
    env = {"PROJECTED_GRPO_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    run = cli("extract", "--model", "tiny-qwen3", "--pairs", pairs, "--k", "2", "--holdout", "0.2", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    # 8 kept pairs: 16 completions in batches of 8; 2 held out: 4 completions in one batch
    assert "extracting from 10 pairs" in run.stderr and "3/3" in run.stderr and "ETA" in run.stderr
    assert "| module |" in run.stdout and "model.layers.0.self_attn.q_proj" in run.stdout  # names in full
    run = cli("eval", tiny_run[0], "--problems", "1", "--n-samples", "2", "--max-new-tokens", "8",
              env={**tiny_run[1], "COLUMNS": "200"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "evaluating" in run.stderr and "8/8" in run.stderr and "ETA" in run.stderr  # 2 slices × 2 × (sample + grade)
    assert "| slice / θ_hack |" in run.stdout and "eval/final" in run.stderr


def test_organism_build_shows_sft_progress_with_an_eta(tmp_path):
    small = ["--set", "n_train=16", "--set", "n_eval=6", "--set", "n_pair_problems=4", "--set", "vocab_size=400",
             "--set", "hidden=32", "--set", "layers=1", "--set", "sft_steps=30", "--set", "prior_samples=1"]
    run = cli("organism", "build", *small, env={"PROJECTED_GRPO_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "supervised fine-tuning" in run.stderr and "30/30" in run.stderr and "ETA" in run.stderr
    assert "measuring its priors" in run.stderr and "priors on 6 held-out problems" in run.stdout


def test_extract_from_a_chosen_organism_by_name(tmp_path):
    small = ["--organism", "n_train=16", "--organism", "n_eval=6", "--organism", "n_pair_problems=4", "--organism",
             "vocab_size=400", "--organism", "hidden=32", "--organism", "layers=1", "--organism", "sft_steps=30",
             "--organism", "prior_samples=1"]
    env = {"PROJECTED_GRPO_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    run = cli("extract", "--model", "organism", *small, "--k", "2", "--holdout", "0.25", env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "gradient basis, control=none" in run.stdout and "model.layers.0.self_attn.q_proj" in run.stdout
    assert len(list((tmp_path / "cache" / "organism").iterdir())) == 1  # that organism, built once, not the default
    _one_error(cli("extract", "--model", "organism", "--organism", "hiden=32", env=env), "--organism 'hiden=32'")
    _one_error(cli("extract", "--model", "tiny-qwen3", "--organism", "hidden=32", env=env), "only with --model organism")


def test_extraction_forward_count_is_the_passes_the_model_runs(tmp_path):
    """The extract bar's total (directions.store.extraction_forwards) against the forward passes actually run."""
    from projected_grpo.adapters.attach import AdapterConfig, attach_adapters
    from projected_grpo.directions.gradient import ExtractionConfig
    from projected_grpo.directions.pairs import load_pairs
    from projected_grpo.directions.store import extraction_forwards, get_basis
    from projected_grpo.models import load_model

    pairs = load_pairs("leetcode_mechanism")[:11]
    model, tokenizer = load_model("tiny-qwen3")
    adapters = attach_adapters(model, AdapterConfig("svd"), base_model_id="tiny-qwen3", cache_dir=tmp_path)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    for space, config in (("gradient", ExtractionConfig(k=2, holdout=0.3)), ("activation", ExtractionConfig(k=2))):
        calls.clear()
        get_basis(pairs, model, adapters, tokenizer, space, config, cache_dir=tmp_path)
        assert len(calls) == extraction_forwards(len(pairs), space, config), space


def test_experiment_in_a_directory_of_another_experiment_names_the_differences(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    saved = {"name": "x", "arms": ["vanilla"], "seeds": [1], "train": {"preset": "tiny"}, "eval": {}, "last_k": 10}
    (out / "experiment.json").write_text(json.dumps({"experiment": saved}))
    before = snapshot(out)
    path = tmp_path / "e.toml"
    path.write_text('name = "x"\narms = ["vanilla", "erase"]\nseeds = [1]\n[train]\npreset = "tiny"\nsteps = 4\n')
    _one_error(cli("experiment", path, "--output", out), 'arms: ["vanilla"] → ["vanilla", "erase"]', "train.steps: (not set) → 4")
    assert snapshot(out) == before


def test_selfcheck_shows_progress_and_prints_its_table_on_stdout(benchmark):
    run = cli("data", "selfcheck", "--problems-per-mode", "1", env={"COLUMNS": "200"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "| response \\ problem mode | run_tests |" in run.stdout and "self-check passed" in run.stdout
    assert "grading the hack × mode diagonal" in run.stderr and "ETA" in run.stderr
