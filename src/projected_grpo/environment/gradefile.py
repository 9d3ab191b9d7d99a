"""Grading a JSONL file so that it can stop and continue (`projected-grpo grade --resume`).

Finished rows are appended, chunk by chunk in input order, to OUTPUT.partial.jsonl beside the output; an
interrupted run keeps them, and a resumed run checks they belong to the same input before it continues. The
output itself is written once, atomically, when every row is graded; then the partial file is removed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from projected_grpo.environment.dataset import DatasetError
from projected_grpo.environment.grader import Grader


def partial_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial.jsonl")


def load_partial(output: Path, rows: list[dict]) -> list[dict]:
    """The rows an interrupted run kept, checked against the input: same order, same records and responses.
    A last line cut short by a hard kill is dropped (it is graded again)."""
    path = partial_path(output)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # the text after the last newline is an incomplete row, or nothing
    try:
        kept = [json.loads(line) for line in lines if line.strip()]
    except json.JSONDecodeError:
        kept = None
    if kept is None or len(kept) > len(rows) or any(
            not isinstance(k, dict) or any(k.get(f) != v for f, v in r.items()) for k, r in zip(kept, rows)):
        raise DatasetError(f"{path}: its rows are not the first rows of this input, graded (another input, or the input "
                           "changed). Fix: delete it to start over, or resume with the input it was made from")
    return kept


def grade_rows(grader: Grader, rows: list[dict], output: Path, kept: list[dict], chunk: int,
               progress: Callable[[int, int], None]) -> list[dict]:
    """Grade rows[len(kept):], appending each finished chunk to the partial file; return every graded row."""
    out = list(kept)
    progress(len(out), len(rows))
    with partial_path(output).open("a", encoding="utf-8") as f:
        for start in range(len(kept), len(rows), chunk):
            part = rows[start:start + chunk]
            grades = grader.grade([(r, r["response"]) for r in part],
                                  progress=lambda done, total, s=start: progress(s + done, len(rows)))
            graded = [{**r, **g.fields} for r, g in zip(part, grades)]
            f.write("".join(json.dumps(g, ensure_ascii=False) + "\n" for g in graded))
            f.flush()
            out += graded
    return out


def kept_count(output: Path) -> int:
    path = partial_path(output)
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.is_file() else 0
