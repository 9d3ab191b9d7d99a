"""What produced an output: command, config, package versions, git commit, isolation level."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("projected_grpo", "torch", "transformers", "trl", "peft", "accelerate", "safetensors", "datasets")


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def cpu() -> str:
    """The CPU model and, when torch is loaded, the vector ISA its kernels use: float results (and so an organism
    build or a run) are bit-identical for one ISA and thread count, and differ in the last bits across them."""
    try:
        name = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name")), platform.processor())
    except OSError:
        name = platform.processor()
    torch = sys.modules.get("torch")
    if torch is None:
        return name
    return f"{name}; torch kernels {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread(s)"


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def provenance(config: dict[str, Any], isolation: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "config": config,
        "versions": versions(),
        "git_commit": git_commit(),
        "isolation": isolation,
    }
