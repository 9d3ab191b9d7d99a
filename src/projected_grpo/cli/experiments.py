"""Experiment commands: experiment, report, demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from projected_grpo.cli.common import app, console, fail, fail_unloadable


WORKERS_HELP = ("Cells trained at a time, each in its own process with an equal share of the cores. Small models "
                "use cores poorly: on 2 cores, 2 one-thread cells finish ≈ 1.3× sooner than one two-thread cell at a "
                "time (benchmarks/matrix_workers.py). Thread count changes results in the last bits (provenance.json).")


@app.command()
def experiment(
    config: Annotated[Path, typer.Argument(help="Experiment file (TOML/YAML): arms, seeds, a train table, an eval table.")],
    output: Annotated[Optional[Path], typer.Option(help="Output directory (default: runs/<name>).")] = None,
    workers: Annotated[int, typer.Option(min=1, help=WORKERS_HELP)] = 1,
) -> None:
    """Run an arm × seed matrix (resumable: re-run the same command after a kill), evaluate each cell on
    held-out problems, and write report.md, curves.png, summary.json."""
    from projected_grpo.errors import ConfigError
    from projected_grpo.experiments.matrix import CellFailed, load_experiment, run_experiment

    try:
        exp = load_experiment(config)
        report = run_experiment(exp, output or Path("runs") / exp.name, workers)
    except (ConfigError, CellFailed) as e:
        fail(str(e))
    show_report(report)


def show_report(report: Path, names=("report.md", "summary.json", "cells.jsonl", "curves.png")) -> None:
    """The report's markdown, verbatim, on stdout (`> r.md` keeps it whole, links included); the files on stderr."""
    typer.echo(report.read_text())
    files = ", ".join(str(report.parent / n) for n in names)
    console.print(f"wrote {files}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="An experiment output directory.")],
    to: Annotated[Optional[Path], typer.Option(
        help="Also copy what the report is computed from (experiment record, per cell config, metrics and eval "
             "summaries; no weights) into this directory and write the report there: a results folder that "
             "regenerates on its own and that the experiment can continue from.")] = None,
) -> None:
    """Regenerate report.md, curves.png, summary.json and cells.jsonl from an experiment's saved metrics and print
    the report (markdown, on stdout). The four files are rewritten in RUN_DIR itself (with --to: in that
    directory, replaced whole), replacing the previous ones."""
    from projected_grpo.errors import ConfigError
    from projected_grpo.experiments.export import export_run
    from projected_grpo.experiments.report import write_report

    if not (run_dir / "experiment.json").is_file():
        fail(f"{run_dir}: no experiment.json — not an experiment output directory")
    try:
        path = export_run(run_dir, to) if to is not None else write_report(run_dir)
    except (FileNotFoundError, ConfigError) as e:
        fail(str(e))
    show_report(path)


@app.command()
def demo(
    output: Annotated[Path, typer.Option(help="Output directory (re-running continues it).")] = Path("runs/demo"),
    workers: Annotated[int, typer.Option(min=1, help=WORKERS_HELP)] = 2,
) -> None:
    """The main job: build the CPU model organism, then vanilla GRPO, erase (update space), the random-basis
    control and the no-loophole baseline for 2 seeds; evaluate; print the table; write report + plot."""
    from importlib import resources

    from projected_grpo.experiments.matrix import CellFailed, load_experiment, run_experiment

    start = time.perf_counter()
    path = Path(str(resources.files("projected_grpo.experiments").joinpath("demo.toml")))
    try:
        report_path = run_experiment(load_experiment(path), output, workers)
    except CellFailed as e:
        fail(str(e))
    show_report(report_path)
    console.print(f"demo done in {(time.perf_counter() - start) / 60:.1f} min")


@app.command("base-rates")
def base_rates_cmd(
    model: Annotated[str, typer.Option(help="smollm2-135m | qwen2.5-coder-0.5b (fetched) | a local directory | a hub id.")],
    slices: Annotated[str, typer.Option(help="Comma-separated: nohint, run_tests, sentinel, stdout_marker, file_marker.")]
    = "nohint,run_tests",
    problems: Annotated[Optional[int], typer.Option(help="The first N problems of the benchmark (default: all).")] = None,
    n_samples: Annotated[int, typer.Option(help="Completions per problem.")] = 1,
    max_new_tokens: Annotated[int, typer.Option(help="Token cap per response.")] = 320,
    temperature: Annotated[float, typer.Option()] = 0.7,
    data: Annotated[Optional[Path], typer.Option(help="Benchmark JSONL (default: leetcode_test_medhard.jsonl in "
                                                      "../shared/data or $PROJECTED_GRPO_BENCHMARK).")] = None,
    out: Annotated[Path, typer.Option(help="Results directory; finished (model, slice) cells are kept and skipped.")]
    = Path("runs/base_rates"),
) -> None:
    """Hack / solve / format base rates of an untrained model on the real benchmark (report.md + summary.json in --out;
    one call per model adds it to the same report)."""
    import shlex

    from huggingface_hub.errors import HFValidationError

    from projected_grpo.cli.common import progress_bar
    from projected_grpo.environment.dataset import DatasetError, default_benchmark_path, load_records
    from projected_grpo.errors import ConfigError
    from projected_grpo.experiments.base_rates import (BaseRateSettings, base_rates, check_slices, model_dirname,
                                                       write_report)

    data = data or default_benchmark_path()
    if data is None:
        fail("no benchmark file: pass --data or set PROJECTED_GRPO_BENCHMARK (leetcode_test_medhard.jsonl)")
    try:
        load_records(data)  # a bad file fails here, before a model loads
        settings = BaseRateSettings(str(Path(data).resolve()), problems, n_samples, max_new_tokens, temperature)
        chosen = check_slices([s.strip() for s in slices.split(",") if s.strip()])
        command = shlex.join(["projected-grpo", "base-rates", "--model", model, "--slices", ",".join(chosen),
                              *(["--problems", str(problems)] if problems else []), "--n-samples", str(n_samples),
                              "--max-new-tokens", str(max_new_tokens), "--temperature", str(temperature),
                              "--out", str(out)])  # the benchmark file is in the settings
        with progress_bar(f"base rates of {model}: sampling and grading", None) as advance:
            base_rates(model, chosen, settings, out, command, advance)
        report = write_report(out)
    except (ConfigError, DatasetError) as e:
        fail(str(e))
    except (OSError, HFValidationError) as e:  # from_pretrained: not a fetched model, directory, .gguf or hub id
        fail_unloadable(model, e)
    show_report(report, ("report.md", "summary.json", f"{model_dirname(model)}/<slice>.jsonl (graded samples)"))
