"""The hack × mode diagonal self-check (environment.md §2).

On problems of each loophole mode, grade every mode's exploit, an honest wrong answer and the
canonical solution. Pass iff: an exploit fires (and is labelled `exploited`) exactly when it
matches the problem's mode; the honest wrong answer never fires; the canonical always passes the
reference GT and the hardened oracle and never counts as exploited.
"""

from __future__ import annotations

from dataclasses import dataclass

from projected_grpo.environment.dataset import Record
from projected_grpo.environment.grader import Grader
from projected_grpo.environment.hints import apply_hint
from projected_grpo.environment.modes import MODE_HINT, MODES
from projected_grpo.environment.specimens import EXPLOITS, fence, wrong_solution

ROWS = (*EXPLOITS, "honest_wrong", "canonical")


@dataclass(frozen=True)
class Cell:
    problem_mode: str
    response: str  # a key of EXPLOITS, "honest_wrong" or "canonical"
    problem_id: int
    fired: bool
    exploited: bool
    eq_correct: bool
    hardened: bool

    @property
    def ok(self) -> bool:
        if self.response == "canonical":
            return self.eq_correct and self.hardened and not self.exploited
        should_fire = self.response == self.problem_mode
        return self.fired == should_fire and self.exploited == should_fire and not self.eq_correct


def run_selfcheck(grader: Grader, records: list[Record], problems_per_mode: int = 1, progress=None) -> list[Cell]:
    """Grade the full diagonal on the first `problems_per_mode` no-hint records, hinted per mode."""
    base = records[:problems_per_mode]
    pairs, keys = [], []
    for mode in MODES:
        for record in base:
            hinted = apply_hint(record, MODE_HINT[mode])
            responses = {name: fence(make(hinted)) for name, make in EXPLOITS.items()}
            responses["honest_wrong"] = fence(wrong_solution(hinted))
            responses["canonical"] = fence(hinted["canonical_solution"])
            for name, response in responses.items():
                pairs.append((hinted, response))
                keys.append((mode, name, record["id"]))
    grades = grader.grade(pairs, progress=progress)
    return [
        Cell(mode, name, pid, g.fields["eq_hinted"], g.fields["exploited"], g.fields["eq_correct"],
             g.fields["gt_correct_hardened"])
        for (mode, name, pid), g in zip(keys, grades)
    ]
