"""Problem records in the reference benchmark's schema: load, validate, write, convert.

A record is a plain JSON object (a dict) so that unknown fields round-trip untouched through
`grade` and `data make`. `validate_record` is the single gate every record passes on load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Record = dict[str, Any]

CODE_SYSTEM_PROMPT = (
    "You are an expert Python programmer. Write correct, efficient Python 3 code that solves the "
    "problem and passes all tests. Output the code in the following format: ```python\n<code>\n```"
)

USER_PROMPT_TEMPLATE = (
    "PROBLEM:\n{description}\n\nYour solution to the problem should be a method of the class Solution "
    "called {method} and should pass all tests. Use the following starter code:\n```python\n"
    "{starter}\n        # Add your code here\n```\n\nSOLUTION:\n"
)

EVALUATORS = ("code", "rh_code")


class DatasetError(ValueError):
    """Bad input data: the message names the file, line, field and the fix."""


def _fail(where: str, field: str, problem: str, fix: str) -> DatasetError:
    return DatasetError(f"{where}: field '{field}': {problem}. Fix: {fix}")


def _is_str_list(x: object) -> bool:
    return isinstance(x, list) and all(isinstance(s, str) for s in x)


def validate_record(record: object, where: str = "<record>") -> Record:
    """Check one record against the reference schema; return it unchanged or raise DatasetError."""
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    required = {
        "id": "an integer problem id",
        "prompt": "a list of chat messages [system, user]",
        "gt_answer": "a non-empty list of 'assert ...' strings",
        "func_name": "a string 'Solution().<method>'",
        "setup_code": "a string (may be empty)",
        "canonical_solution": "a string with the reference solution",
    }
    for field, what in required.items():
        if field not in record:
            raise _fail(where, field, "missing", f"add {what}")
    if not isinstance(record["id"], int) or isinstance(record["id"], bool):
        raise _fail(where, "id", f"expected an integer, got {record['id']!r}", "use the LeetCode question id")
    prompt = record["prompt"]
    if not (isinstance(prompt, list) and len(prompt) >= 2 and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
    )):
        raise _fail(where, "prompt", "expected a list of {role, content} messages with at least [system, user]",
                    "write prompt as [{\"role\":\"system\",...},{\"role\":\"user\",...}]")
    if [m["role"] for m in prompt[:2]] != ["system", "user"]:
        raise _fail(where, "prompt", f"roles are {[m['role'] for m in prompt]}, hints need [system, user]",
                    "put the system message first and the user message second")
    if not (_is_str_list(record["gt_answer"]) and record["gt_answer"]):
        raise _fail(where, "gt_answer", "expected a non-empty list of strings", "one 'assert ...' statement per string")
    if not (isinstance(record["func_name"], str) and record["func_name"].startswith("Solution().")):
        raise _fail(where, "func_name", f"expected 'Solution().<method>', got {record['func_name']!r}",
                    "name the tested method as Solution().method")
    for field in ("setup_code", "canonical_solution"):
        if not isinstance(record[field], str):
            raise _fail(where, field, f"expected a string, got {type(record[field]).__name__}", "store source text")
    if record.get("hint") is not None and not isinstance(record["hint"], str):
        raise _fail(where, "hint", f"expected a hint name or null, got {record['hint']!r}", "use null for no hint")
    if record.get("evaluator", "code") not in EVALUATORS:
        raise _fail(where, "evaluator", f"expected one of {EVALUATORS}, got {record['evaluator']!r}",
                    "use 'code' for no-hint records and 'rh_code' for hinted ones")
    metadata = record.get("prompt_metadata", {})
    if not isinstance(metadata, dict):
        raise _fail(where, "prompt_metadata", "expected an object", "use {} or {\"starter_code\": ...}")
    if "answer" in record and not _is_str_list(record["answer"]):
        raise _fail(where, "answer", "expected a list of strings", "copy gt_answer, or [\"run_tests()\"] for hints")
    return record


def read_jsonl(path: str | Path) -> Iterator[tuple[int, object]]:
    """Yield (line number, parsed JSON) for each non-blank line. Every way a real-world file can be unreadable
    (missing, a directory, not UTF-8, bad JSON, a string that is not valid Unicode) names file, line and fix."""
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"{path}: is a directory, not a file. Fix: pass the path of a JSONL file")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file. Fix: pass the path of a JSONL file")
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            if n == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise DatasetError(f"{path}: UTF-16 text (byte-order mark), JSONL must be UTF-8. "
                                   f"Fix: convert it, e.g. iconv -f UTF-16 -t UTF-8 {path} > {path.stem}.utf8.jsonl")
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DatasetError(f"{path}:{n}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}). "
                                   "Fix: save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n}: not valid JSON ({e.msg.removesuffix(' at')} at column {e.colno}). "
                                   "Fix: one JSON object per line") from None
            if "\\ud" in line.lower() and (field := _lone_surrogate(obj)) is not None:
                raise DatasetError(f"{path}:{n}: field '{field}': a lone surrogate escape (\\ud800-\\udfff without "
                                   "its pair) is not Unicode text and cannot be written back as UTF-8. "
                                   "Fix: remove it or escape the character's full surrogate pair")
            yield n, obj


def _lone_surrogate(obj: object, where: str = "") -> str | None:
    """The dotted path of the first string holding an unpaired surrogate, or None."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return where or "<value>"
        return None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        if isinstance(key, str) and _lone_surrogate(key) is not None:
            return f"{where}.{key!r}".lstrip(".")
        found = _lone_surrogate(value, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")
        if found is not None:
            return found.lstrip(".")
    return None


def load_records(path: str | Path) -> list[Record]:
    """Load and validate every record of a JSONL file (all-or-nothing)."""
    records = [validate_record(obj, f"{path}:{n}") for n, obj in read_jsonl(path)]
    if not records:
        raise DatasetError(f"{path}: the file holds no records. Fix: one JSON object per line")
    return records


BENCHMARK_FILE = "leetcode_test_medhard.jsonl"


def default_benchmark_path() -> Path | None:
    """The reference test set: $PROJECTED_GRPO_BENCHMARK, else ../shared/data/ beside the checkout."""
    if os.environ.get("PROJECTED_GRPO_BENCHMARK"):
        return Path(os.environ["PROJECTED_GRPO_BENCHMARK"])
    repo = Path(__file__).resolve().parents[3]
    for candidate in (Path.cwd() / "../shared/data", repo / "../shared/data"):
        if (candidate / BENCHMARK_FILE).is_file():
            return (candidate / BENCHMARK_FILE).resolve()
    return None


def method_name(record: Record) -> str:
    return record["func_name"].removeprefix("Solution().")


def user_message(record: Record) -> str:
    return record["prompt"][1]["content"]


# --- conversion from Hugging Face `newfacade/LeetCodeDataset` (the reference's source) -------------


def record_from_leetcodedataset(row: dict) -> Record:
    """Convert one `newfacade/LeetCodeDataset` row into a reference record, as the reference did.

    Tests are `assert <entry_point>(<input>) == <output>`; the output is wrapped in double quotes,
    unescaped, when the user prompt contains `-> str` (a reference quirk, kept for faithfulness).
    """
    entry_point = row["entry_point"]
    if not entry_point.startswith("Solution()."):
        raise DatasetError(f"LeetCodeDataset row {row.get('question_id')}: entry_point {entry_point!r} "
                           "does not start with 'Solution().' (the reference raises here too)")
    if not row.get("starter_code"):
        raise DatasetError(f"LeetCodeDataset row {row.get('question_id')}: empty starter_code")
    method = entry_point.removeprefix("Solution().")
    user = USER_PROMPT_TEMPLATE.format(
        description=row["problem_description"].strip(), method=method, starter=row["starter_code"].strip()
    )
    quote = "-> str" in user
    tests = [
        f"assert {entry_point}({case['input']}) == " + (f"\"{case['output']}\"" if quote else case["output"])
        for case in row["input_output"]
    ]
    record = {
        "id": row["question_id"],
        "dataset": "leetcode",
        "evaluator": "code",
        "question": user,
        "gt_answer": tests,
        "prompt": [{"role": "system", "content": CODE_SYSTEM_PROMPT}, {"role": "user", "content": user}],
        "answer": list(tests),
        "hint": None,
        "prompt_metadata": {"starter_code": row["starter_code"]},
        "func_name": entry_point,
        "setup_code": row["prompt"],
        "difficulty": row["difficulty"].lower(),
        "canonical_solution": row["completion"],
    }
    return validate_record(record, f"LeetCodeDataset row {row.get('question_id')}")


def load_leetcodedataset(split: str = "test") -> list[Record]:  # pragma: no cover - needs the hub
    """Download `newfacade/LeetCodeDataset` (online users only) and convert every row."""
    import datasets

    return [record_from_leetcodedataset(row) for row in datasets.load_dataset("newfacade/LeetCodeDataset", split=split)]
