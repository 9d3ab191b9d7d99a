import json

import pytest

from projected_grpo.atomic import write_jsonl_atomic
from projected_grpo.environment.dataset import (
    CODE_SYSTEM_PROMPT,
    USER_PROMPT_TEMPLATE,
    DatasetError,
    load_records,
    record_from_leetcodedataset,
)


def test_real_benchmark_loads_and_matches_schema(benchmark):
    assert len(benchmark) == 119
    assert sum(r["difficulty"] == "medium" for r in benchmark) == 73
    assert all(r["prompt"][0]["content"] == CODE_SYSTEM_PROMPT for r in benchmark)
    assert sum(len(r["gt_answer"]) for r in benchmark) == 12592


def test_user_prompt_template_rebuilds_every_real_prompt(benchmark):
    for r in benchmark:
        text = r["prompt"][1]["content"]
        description = text.removeprefix("PROBLEM:\n").split("\n\nYour solution to the problem")[0]
        method = r["func_name"].removeprefix("Solution().")
        starter = r["prompt_metadata"]["starter_code"].strip()
        assert USER_PROMPT_TEMPLATE.format(description=description, method=method, starter=starter) == text


def _row(**over):
    row = {
        "question_id": 7, "task_id": "reverse-words", "difficulty": "Medium",
        "problem_description": "  Reverse the words of s.\n ",
        "starter_code": "class Solution:\n    def reverseWords(self, s: str) -> str:\n        ",
        "entry_point": "Solution().reverseWords",
        "input_output": [{"input": 's = "a b"', "output": "b a"}, {"input": 's = "x"', "output": "x"}],
        "prompt": "import math\n", "completion": "class Solution:\n    def reverseWords(self, s):\n        return ' '.join(s.split()[::-1])\n",
    }
    row.update(over)
    return row


def test_leetcodedataset_conversion_quotes_str_outputs_and_builds_prompt():
    rec = record_from_leetcodedataset(_row())
    assert rec["gt_answer"] == ['assert Solution().reverseWords(s = "a b") == "b a"', 'assert Solution().reverseWords(s = "x") == "x"']
    assert rec["answer"] == rec["gt_answer"] and rec["hint"] is None and rec["evaluator"] == "code"
    assert rec["difficulty"] == "medium" and rec["id"] == 7 and rec["setup_code"] == "import math\n"
    user = rec["prompt"][1]["content"]
    assert user.startswith("PROBLEM:\nReverse the words of s.\n\nYour solution to the problem should be a method of the class Solution called reverseWords")
    assert user.endswith("def reverseWords(self, s: str) -> str:\n        # Add your code here\n```\n\nSOLUTION:\n")
    assert rec["question"] == user and rec["prompt_metadata"] == {"starter_code": _row()["starter_code"]}


def test_leetcodedataset_conversion_leaves_non_str_outputs_bare():
    row = _row(starter_code="class Solution:\n    def f(self, n: int) -> int:\n        ", entry_point="Solution().f",
               input_output=[{"input": "n = 3", "output": "9"}])
    assert record_from_leetcodedataset(row)["gt_answer"] == ["assert Solution().f(n = 3) == 9"]


def test_leetcodedataset_conversion_rejects_non_solution_entry_points():
    with pytest.raises(DatasetError, match="entry_point"):
        record_from_leetcodedataset(_row(entry_point="reverseWords"))


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.pop("gt_answer"), "gt_answer"),
    (lambda r: r.update(gt_answer=[]), "gt_answer"),
    (lambda r: r.update(id="3243"), "id"),
    (lambda r: r.update(func_name="shortest"), "func_name"),
    (lambda r: r.update(prompt=[{"role": "user", "content": "x"}]), "prompt"),
    (lambda r: r.update(evaluator="magic"), "evaluator"),
    (lambda r: r.update(hint=3), "hint"),
])
def test_malformed_record_error_names_file_line_and_field(tmp_path, mutate, field):
    good = record_from_leetcodedataset(_row())
    bad = json.loads(json.dumps(good))
    mutate(bad)
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DatasetError) as err:
        load_records(path)
    assert f"{path}:2: field '{field}'" in str(err.value) and "Fix:" in str(err.value)


def test_bad_json_line_is_named(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(record_from_leetcodedataset(_row())) + '\n{not json\n')
    with pytest.raises(DatasetError, match=r"data.jsonl:2: not valid JSON"):
        list(load_records(path))


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl_atomic(path, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, rows())
    assert path.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
