"""Errors raised at the user's boundary (configs, data files, model names): each message names where,
which field, and the fix, and the CLI prints it as one line with exit code 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """Invalid configuration: the message names where, which field, and the fix."""
