"""`projected-grpo`: the command-line interface, one module per command group.

common (app, console, errors) ← environment, method, training, organism, experiments, models. Each group
imports its domain modules inside the commands, so `--help` and the grading commands start fast.
"""

from __future__ import annotations

import sys

from projected_grpo.cli import environment, experiments, method, models, organism, training  # noqa: F401  (registers)
from projected_grpo.cli.common import app, quiet_libraries
from projected_grpo.logs import console_log

app.add_typer(models.models_app, name="models")

__all__ = ["app", "main"]


def main() -> None:
    quiet_libraries()
    console_log()  # our messages (loguru) on stderr, through the progress bars
    app()


if __name__ == "__main__":
    sys.exit(main())
