"""Markdown tables for the reports (tabulate's GitHub format: aligned columns, renders on GitHub)."""

from __future__ import annotations

from tabulate import tabulate


def markdown_table(headers: list[str], rows: list[list]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
