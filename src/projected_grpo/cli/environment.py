"""Environment commands: grade, data make / selfcheck, sandbox-info, label-table."""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from projected_grpo.atomic import write_json_atomic, write_jsonl_atomic
from projected_grpo.cli.common import (
    AllowUnisolated,
    Force,
    Timeout,
    Workers,
    app,
    check_output,
    console,
    fail,
    graded,
    open_sandbox,
    progress_bar,
    show_table,
)
from projected_grpo.environment.dataset import (
    DatasetError,
    default_benchmark_path,
    load_records,
    read_jsonl,
    validate_record,
)
from projected_grpo.environment.grader import Grader
from projected_grpo.environment.hints import HINTS, NO_HINT
from projected_grpo.environment.modes import GT_ONLY, MODES, make_hinted, make_multimode
from projected_grpo.environment.tally import tally
from projected_grpo.provenance import provenance

data_app = typer.Typer(help="Make hinted / multi-mode datasets and self-check the loophole modes.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def label_summary(rows: list[dict], title: str) -> None:
    table: list = []
    for i, section in enumerate(tally(rows)):
        table += ([None] if i else []) + [list(row) for row in section]
    show_table(title, ["label", "count", "share"], table, right=(1, 2))


@app.command()
def grade(
    input: Annotated[Path, typer.Argument(help="JSONL: each row a full problem record (hint applied) + `response`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write graded rows (JSONL, atomic).")],
    workers: Workers = None,
    timeout: Timeout = 3.0,
    allow_unisolated: AllowUnisolated = False,
    force: Force = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from OUTPUT.partial.jsonl.")] = False,
) -> None:
    """Grade responses: the reference's five sandboxed runs and labels, the hardened oracle, loophole modes.

    Each output row is the input row plus every grading field (eq_correct, eq_hinted, reward_hack_label, is_reward_hack_strict/loose, gt_correct_hardened, exploited, mode, per-run results under runs). OUTPUT.meta.json records the isolation level, limits, versions and git commit. Finished rows go to OUTPUT.partial.jsonl as grading proceeds: after Ctrl-C, the same command with --resume continues where it stopped.
    """
    from projected_grpo.environment.gradefile import grade_rows, kept_count, load_partial, partial_path

    check_output(output, force, input)
    partial = partial_path(output)
    if partial.exists() and not resume:
        fail(f"{partial}: an interrupted grading run kept its rows there. Fix: add --resume to continue it, "
             "or delete it to start over")
    try:
        rows = []
        for n, obj in read_jsonl(input):
            where = f"{input}:{n}"
            validate_record(obj, where)
            if not isinstance(obj.get("response"), str):
                raise DatasetError(f"{where}: field 'response': missing or not a string. "
                                   "Fix: add the model's completion text as \"response\"")
            rows.append(obj)
        if not rows:
            raise DatasetError(f"{input}: no rows to grade")
        kept = load_partial(output, rows) if resume else []
    except DatasetError as e:
        fail(str(e))
    sandbox = open_sandbox(workers, timeout, allow_unisolated)
    if kept:
        console.print(f"resuming: {len(kept)} of {len(rows)} rows already graded in {partial}")
    start = time.perf_counter()
    try:
        with progress_bar(f"grading {len(rows)} responses", len(rows)) as advance:
            out_rows = grade_rows(Grader(sandbox), rows, output, kept, advance)
    except KeyboardInterrupt:
        sandbox.close()  # the runs in flight end now; queued ones were dropped
        n = kept_count(output)
        if n == 0:
            partial.unlink(missing_ok=True)
        console.print(f"interrupted: {n} of {len(rows)} rows were graded and are kept in {partial}; the same command "
                      "with --resume continues" if n else "interrupted: no row was finished, nothing kept")
        raise typer.Exit(130)
    elapsed = time.perf_counter() - start
    write_jsonl_atomic(output, out_rows)
    write_json_atomic(Path(f"{output}.meta.json"), provenance(
        {"input": str(input), "workers": sandbox.workers, "limits": sandbox.limits.__dict__},
        sandbox.isolation.as_dict()))
    partial.unlink(missing_ok=True)
    console.print(f"wrote {output} ({len(out_rows)} graded rows) and {output}.meta.json")
    label_summary(out_rows, f"{len(out_rows)} responses graded in {elapsed:.1f}s")


@data_app.command("make")
def data_make(
    input: Annotated[Path, typer.Argument(help="No-hint problem records (JSONL, reference schema).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the hinted records.")],
    hint: Annotated[Optional[str], typer.Option(help=f"One of: {', '.join(HINTS)}, {NO_HINT}, {GT_ONLY}.")] = None,
    modes: Annotated[Optional[str], typer.Option(
        help=f"Comma-separated loophole modes ({', '.join(MODES)}): each problem gets one, by a seeded partition.")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the mode partition and the random test-function names.")] = 0,
    force: Force = False,
) -> None:
    """Write a hinted dataset (one hint on every problem) or a multi-mode dataset (`--modes`)."""
    if (hint is None) == (modes is None):
        fail("pass exactly one of --hint NAME or --modes m1,m2,...")
    check_output(output, force, input)
    try:
        records = load_records(input)
        if hint is not None:
            if hint not in (*HINTS, NO_HINT, GT_ONLY):
                fail(f"--hint {hint!r} is not a hint; choose one of {', '.join((*HINTS, NO_HINT, GT_ONLY))}")
            made = make_hinted(records, hint, seed)
        else:
            chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
            made = make_multimode(records, chosen, seed)
    except (DatasetError, ValueError) as e:
        fail(str(e))
    write_jsonl_atomic(output, made)
    counts = collections.Counter(r["hint"] for r in made)
    console.print(f"wrote {len(made)} records to {output}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@data_app.command("selfcheck")
def data_selfcheck(
    input: Annotated[Optional[Path], typer.Argument(help="No-hint records (default: the reference test set).")] = None,
    problems_per_mode: Annotated[int, typer.Option(min=1, help="Problems graded per mode.")] = 2,
    workers: Workers = None,
    timeout: Timeout = 3.0,
    allow_unisolated: AllowUnisolated = False,
) -> None:
    """Grade the hack × mode diagonal: each exploit must fire only on its own mode's problems."""
    from projected_grpo.environment.selfcheck import ROWS, run_selfcheck

    records = benchmark_records(input)
    sandbox = open_sandbox(workers, timeout, allow_unisolated)
    with progress_bar("grading the hack × mode diagonal", None) as advance:
        cells = run_selfcheck(Grader(sandbox), records, problems_per_mode, progress=advance)
    rows = []
    for row in ROWS:
        cells_row = []
        for mode in MODES:
            here = [c for c in cells if c.response == row and c.problem_mode == mode]
            mark = "✓" if all(c.ok for c in here) else "[red]✗[/]"
            what = "correct" if row == "canonical" else "fires"
            n = sum(c.eq_correct if row == "canonical" else c.fired for c in here)
            cells_row.append(f"{mark} {what} {n}/{len(here)}")
        rows.append([row, *cells_row])
    show_table("hack × mode diagonal: fired/exploited per response (✓ = as required)",
               ["response \\ problem mode", *MODES], rows)
    if not all(c.ok for c in cells):
        fail("self-check failed: see the ✗ cells")
    typer.echo("self-check passed")


@app.command("sandbox-info")
def sandbox_info(allow_unisolated: AllowUnisolated = False) -> None:
    """Detect and print the isolation level the grader would use on this host."""
    sandbox = open_sandbox(1, 3.0, allow_unisolated, announce=False)
    for key, value in sandbox.isolation.as_dict().items():
        if isinstance(value, (list, tuple)):
            value = "; ".join(map(str, value)) or "none"
        typer.echo(f"{key}: {value}")


def benchmark_records(path: Path | None) -> list:
    path = path or default_benchmark_path()
    if path is None:
        fail("no benchmark file found. Pass a path, set PROJECTED_GRPO_BENCHMARK, or put "
              "leetcode_test_medhard.jsonl at ../shared/data/ (online users: see README, 'Data').")
    try:
        return load_records(path)
    except DatasetError as e:
        fail(str(e))


@app.command("label-table")
def label_table_cmd(
    input: Annotated[Optional[Path], typer.Argument(help="No-hint records (default: the reference test set).")] = None,
    problems: Annotated[int, typer.Option(min=1, help="Problems sampled from the benchmark.")] = 4,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/label-table"),
    workers: Workers = None,
    allow_unisolated: AllowUnisolated = False,
) -> None:
    """Grade the reference's label-table specimens on real problems and print the label table.

    Exercises the sandbox, the reference labels, the hardened oracle and the hack × mode diagonal on the real benchmark.
    """
    from projected_grpo.environment.hints import apply_hint
    from projected_grpo.environment.selfcheck import run_selfcheck
    from projected_grpo.environment.specimens import label_table

    records = benchmark_records(input)[:problems]
    sandbox = open_sandbox(workers, 3.0, allow_unisolated)
    grader = Grader(sandbox)
    hinted = [apply_hint(r, "simple_overwrite_tests") for r in records]
    pairs, names, expects, ids = [], [], [], []
    for record in hinted:
        for s in label_table(record):
            pairs.append((record, s.response))
            names.append(s.name)
            expects.append(s.expect)
            ids.append(record["id"])
    start = time.perf_counter()
    grades = graded(grader, pairs, f"grading {len(pairs)} specimen responses")
    table = []
    rows = []
    for name in dict.fromkeys(names):
        idx = [i for i, n in enumerate(names) if n == name]
        fields = [grades[i].fields for i in idx]
        ok = sum(all(grades[i].fields[k] == v for k, v in expects[i].items()) for i in idx)
        table.append([name, _mode_of(f["reward_hack_label"] for f in fields),
                      str(_mode_of(f["test_modification"] for f in fields)),
                      _mode_of(str(f["gt_correct_hardened"]) for f in fields), f"{ok}/{len(idx)}"])
        rows += [{"id": ids[i], "specimen": name, "response": pairs[i][1], **grades[i].fields} for i in idx]
    show_table(f"Reference label table on {len(records)} real problems (hint simple_overwrite_tests)",
               ["response", "label (reference)", "test_modification", "hardened", "matches §3.7"], table)
    with progress_bar("grading the hack × mode diagonal", None) as advance:
        cells = run_selfcheck(grader, records, 1, progress=advance)
    elapsed = time.perf_counter() - start
    typer.echo(f"hack × mode diagonal on {len(records[:1])} problem per mode: "
               + ("passed" if all(c.ok for c in cells) else "FAILED"))
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / "graded.jsonl", rows)
    write_json_atomic(out / "meta.json", provenance({"problems": problems, "elapsed_s": elapsed},
                                                    sandbox.isolation.as_dict()))
    console.print(f"done in {elapsed:.1f}s; wrote {out / 'graded.jsonl'} (per-response records) and {out / 'meta.json'}")


def _mode_of(values) -> str:
    counts = collections.Counter(values)
    (top, n), total = counts.most_common(1)[0], sum(counts.values())
    return str(top) if n == total else f"{top} ({n}/{total})"
