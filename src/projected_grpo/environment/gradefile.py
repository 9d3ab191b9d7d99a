"""Grading a JSONL file so that it can stop and continue (`projected-grpo grade --resume`).

Finished rows are appended in input order, each as soon as every row before it is done, to OUTPUT.partial.jsonl
beside the output; an interrupted run keeps them, and a resumed run checks they belong to the same input before it
continues. The output itself is written once, atomically, when every row is graded; then the partial file is removed.
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
    A last line cut short by a hard kill is dropped (it is graded again), and cut from the file so that the resumed
    run appends on a line of its own."""
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
    if not text.endswith("\n") and text:
        with path.open("r+b") as f:
            f.truncate(len(text[:text.rfind("\n") + 1].encode("utf-8")))
    return kept


def grade_rows(grader: Grader, rows: list[dict], output: Path, kept: list[dict],
               progress: Callable[[int, int], None]) -> list[dict]:
    """Grade rows[len(kept):] in one batch (no barrier between chunks: the workers never wait for a slow
    response's neighbours), appending each newly finished prefix of the input to the partial file; return every row."""
    out, todo, finished = list(kept), rows[len(kept):], {}
    progress(len(out), len(rows))
    with partial_path(output).open("a", encoding="utf-8") as f:
        def on_grade(i: int, grade) -> None:
            finished[i] = {**todo[i], **grade.fields}
            while len(out) - len(kept) in finished:  # rows go out in input order, so a resumed run can count them
                out.append(finished.pop(len(out) - len(kept)))
                f.write(json.dumps(out[-1], ensure_ascii=False) + "\n")
            f.flush()

        grader.grade([(r, r["response"]) for r in todo], progress=lambda done, _: progress(len(kept) + done, len(rows)),
                     on_grade=on_grade)
    return out


def kept_count(output: Path) -> int:
    path = partial_path(output)
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.is_file() else 0
