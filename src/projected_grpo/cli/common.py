"""Shared by every command group: the app, the console, the one way to fail, the grading options."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from projected_grpo.environment.grader import Grader
from projected_grpo.environment.sandbox import IsolationError, Limits, Sandbox

app = typer.Typer(
    help="Projected GRPO: a secure LeetCode reward-hacking benchmark, the hack-direction projection "
    "method, and a CPU model organism. Start with `projected-grpo demo`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)  # progress and diagnostics; a line is never cut or wrapped mid-path
out = Console(soft_wrap=True)  # results (tables, reports) go to stdout, so `projected-grpo report DIR > r.md` works

Workers = Annotated[Optional[int], typer.Option("--workers", "-j", min=1, help="Parallel sandboxed runs (default: CPU count).")]
def show_table(title: str, columns: list[str], rows: list[list[str] | None], right: tuple[int, ...] = ()) -> None:
    """A result table on stdout: a rich table on a terminal (cells fold, never cut), markdown when piped or
    redirected (every cell in full; rich markup dropped). A None row starts a new section."""
    if out.is_terminal:
        table = Table(title=title)
        for i, name in enumerate(columns):
            table.add_column(name, justify="right" if i in right else "left", overflow="fold")
        for row in rows:
            table.add_section() if row is None else table.add_row(*row)
        out.print(table)
        return
    plain = lambda x: Text.from_markup(str(x)).plain.replace("|", "\\|")  # noqa: E731
    lines = [plain(title), "", "| " + " | ".join(map(plain, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(map(plain, row)) + " |" for row in rows if row is not None]
    typer.echo("\n".join(lines) + "\n")


def whole_seconds(value: float) -> float:
    """Option callback (checked while parsing, before any work): the sandbox counts whole seconds >= 1,
    as the reference's RLIMIT_CPU does."""
    if not (float(value).is_integer() and value >= 1):
        raise typer.BadParameter(f"{value} is not a whole number of seconds >= 1 (the reference used 3)")
    return value


Timeout = Annotated[float, typer.Option(callback=whole_seconds,
                                        help="Per-run budget in whole seconds (SIGALRM and CPU); the reference used 3.")]
AllowUnisolated = Annotated[bool, typer.Option(
    "--allow-unisolated", help="Grade even without network/filesystem isolation (rlimits only). Unsafe.")]


Force = Annotated[bool, typer.Option("--force", help="Overwrite the output file if it exists.")]


def fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg="red")
    raise typer.Exit(2)


def fail_unloadable(model: str, error: Exception, also: str = "") -> None:
    """A model that from_pretrained cannot load (OSError, or a malformed hub id): one message naming the sources."""
    fail(f"--model {model}: cannot load it ({str(error).splitlines()[0]}). Fix: pass {also}a fetched model "
         "(projected-grpo models list), a model directory, a .gguf file, or a hub id (online only)")


def check_output(output: Path, force: bool, *inputs: Path | None) -> None:
    """Before any work: the output file is writable, is not an input, and replaces nothing unless --force."""
    if output.is_dir():
        fail(f"{output}: is a directory. Fix: pass a file path for the output")
    for source in inputs:
        if source is not None and source.exists() and output.exists() and output.samefile(source):
            fail(f"{output}: is also the input. Fix: write the output to another file")
    if output.exists() and not force:
        fail(f"{output}: exists. Fix: pass --force to overwrite it, or choose another output path")
    parent = next((p for p in (output.absolute().parent, *output.absolute().parents) if p.exists()), None)
    if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)):
        fail(f"{output}: cannot create it ({parent} is not a writable directory). Fix: choose another output path")


def open_sandbox(workers: int | None, timeout: float, allow_unisolated: bool, announce: bool = True) -> Sandbox:
    try:
        sandbox = Sandbox(workers or os.cpu_count() or 1, Limits(timeout_s=timeout, kill_after_s=timeout + 1),
                          allow_unisolated=allow_unisolated)
    except IsolationError as e:
        fail(str(e))
    iso = sandbox.isolation
    if not announce:
        return sandbox
    style = "green" if iso.level == "bwrap" else "bold red"
    console.print(f"[{style}]isolation: {iso.level}[/] — network {iso.network}; {iso.filesystem}; {iso.uid}")
    return sandbox


@contextlib.contextmanager
def progress_bar(what: str, total: int | None) -> Iterator[Callable[[int, int], None]]:
    """A bar with count, elapsed time and ETA on stderr; yields `update(done, total)` (total None: not known
    until the first update, e.g. while a model loads)."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def graded(grader: Grader, pairs: list, what: str) -> list:
    with progress_bar(what, len(pairs)) as advance:
        return grader.grade(pairs, progress=advance)


def quiet_libraries() -> None:
    """Our progress and results only: no library deprecation warnings, per-model "Loading weights" bars or
    tokenizer notices (set before transformers is imported; a user's own settings win)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft|accelerate)(\.|$)")

