"""Errors raised at the user's boundary (configs, data files, model names): each message names where,
which field, and the fix, and the CLI prints it as one line with exit code 2."""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """Invalid configuration: the message names where, which field, and the fix."""


def read_user_text(path: str | Path, what: str) -> str:
    """A user's config / experiment file as text: missing, a directory or not UTF-8 is one ConfigError."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a {what}. Fix: pass the file's path")
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte at offset {e.start}). Fix: save the {what} as UTF-8") from None
