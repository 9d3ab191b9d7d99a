"""Our messages go through loguru: modules `from loguru import logger` and log. Where they appear is set in
two places only: the CLI installs the console sink once (`console_log`), and a training run adds a file
sink for its `train.log` while it runs (`run_log`). A library user who configures nothing gets loguru's
default stderr sink, so nothing is silenced.

A record bound with `console=False` (`logger.bind(console=False)`) is for the run's file only: per-step
lines of a run trained under another progress bar (the experiment runner), the config summary, tracebacks."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from loguru import logger

# as liblog.py formats the libraries' lines in the same file, less the logger name (ours have none)
FILE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss,SSS} {level}: {message}\n{exception}"

_console_sink: int | None = None


def on_console(record) -> bool:
    """The console sink's filter: all but the file-only records."""
    return record["extra"].get("console", True)


def _console_format(record) -> str:
    # plain lines, as the CLI printed them before; only warnings and errors name their level
    if record["level"].no < 30:
        return "{message}\n{exception}"
    return f"<level>{record['level'].name.lower()}</level>: {{message}}\n{{exception}}"


def _write_stderr(message: str) -> None:
    # sys.stderr looked up per message: under a rich progress bar it is rich's proxy (lines print above the
    # bar); tqdm.write clears and redraws any tqdm bar on the same stream (the trainer's, the runner's)
    from tqdm import tqdm

    tqdm.write(str(message), file=sys.stderr, end="")


def console_log(level: str = "INFO") -> None:
    """The CLI's console: human-readable lines on stderr, through tqdm and rich bars. Replaces loguru's
    default sink (and a previous console sink), never a run's file sink."""
    global _console_sink
    with contextlib.suppress(ValueError):  # already removed: the default (id 0) or our previous sink
        logger.remove(_console_sink if _console_sink is not None else 0)
    colour = sys.stderr.isatty() and "NO_COLOR" not in os.environ
    _console_sink = logger.add(_write_stderr, level=level, format=_console_format, colorize=colour, diagnose=False,
                               filter=on_console)


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[None]:
    """For the duration: every message, file-only ones included, is also appended to `path` (a resumed run's
    lines follow the killed run's). Under DDP only rank 0 writes it (the other ranks' lines would repeat)."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # diagnose=False: a traceback without local values (tensors, a judge's API key)
    sink = logger.add(path, level="DEBUG", format=FILE_FORMAT, mode="a", encoding="utf-8", colorize=False,
                      backtrace=False, diagnose=False)
    try:
        yield
    finally:
        logger.remove(sink)
