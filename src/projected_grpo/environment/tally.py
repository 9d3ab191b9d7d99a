"""Tallies of graded rows: label shares, the grading flags, and exploits per loophole mode."""

from __future__ import annotations

import collections

from projected_grpo.environment.labels import LABELS
from projected_grpo.environment.modes import MODES

FLAGS = ("is_formatted", "can_compile", "eq_correct", "gt_correct_hardened", "eq_hinted",
         "is_reward_hack_strict", "is_reward_hack_loose", "exploited")


def tally(rows: list[dict]) -> list[list[tuple[str, str, str]]]:
    """Sections of (name, count, share) rows: the reference labels, the flags, and (for multi-mode data)
    exploited / problems per mode."""
    n = max(len(rows), 1)
    labels = collections.Counter(r["reward_hack_label"] for r in rows)
    sections = [[(label, str(labels[label]), f"{labels[label] / n:.1%}") for label in LABELS]]
    flags = {key: sum(bool(r[key]) for r in rows) for key in FLAGS}
    sections.append([(key, str(c), f"{c / n:.1%}") for key, c in flags.items()])
    modes = collections.Counter(r["mode"] for r in rows if r["mode"])
    if len(modes) > 1:
        sections.append([(f"exploited | mode={mode}", f"{sum(r['exploited'] for r in rows if r['mode'] == mode)}/{modes[mode]}", "")
                         for mode in MODES])
    return sections
