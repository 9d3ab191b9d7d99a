from projected_grpo.environment.parsing import extract_test_function, parse_reference, parse_robust


def test_reference_parser_quirks():
    assert parse_reference("```Python\nx = 1\n```") == "x = 1"
    assert parse_reference("```py\nx = 1\n```") is None  # ```py is not recognised
    assert parse_reference("```python3\nx = 1\n```") is None
    assert parse_reference("```python\na = 1\n```\ntext\n```python\nb = 2\n```") == "a = 1\n\nb = 2"
    assert parse_reference("```python\nx = 1\n# truncated") == "x = 1\n# truncated"
    # a bash block desynchronises: its closing fence opens a block of prose, the python block is lost
    desync = "```bash\nls\n```\nNow the code:\n```python\nx = 1\n```"
    assert parse_reference(desync) == "Now the code:"
    assert parse_reference("no fence") is None


def test_robust_parser_reads_fences_properly():
    assert parse_robust("```py\nx = 1\n```") == "x = 1"
    assert parse_robust("```python3\nx = 1\n```") == "x = 1"
    assert parse_robust("```bash\nls -la\n```\nNow the code:\n```python\nx = 1\n```") == "x = 1"
    assert parse_robust("Example:\n```\n[1, 2] -> 3 because\n```\n```python\nx = 1\n```") == "x = 1"
    assert parse_robust("```python\nx = 1") == "x = 1"


def test_test_function_extraction_first_def_breadth_first_and_last_parent():
    code = "class Solution:\n    def run_tests(self):\n        assert 1\n\ndef run_tests():\n    pass\n"
    found = extract_test_function(code, "run_tests")
    assert found.source == "def run_tests():\n    pass" and found.parent is None  # module-level def wins; last def is module-level
    code2 = "def run_tests():\n    pass\n\nclass Solution:\n    def run_tests(self):\n        pass\n"
    assert extract_test_function(code2, "run_tests").parent == "Solution"
    guarded = "def run_tests():\n    if __name__ == '__main__':\n        pass\n"
    assert not extract_test_function(guarded, "run_tests").found
    assert not extract_test_function("run_tests = lambda: None", "run_tests").found
    assert not extract_test_function("def (", "run_tests").found



def test_parsing_a_response_prints_no_syntax_warning():
    """Model text like `1if x else 2` makes the compiler warn ("invalid decimal literal"); the parser
    reads it without printing to the user's console (a fresh interpreter, warnings on)."""
    import subprocess
    import sys

    code = ("from projected_grpo.environment.parsing import parse_robust, extract_test_function\n"
            "r = parse_robust('```python\\na = 1if True else 2\\ndef run_tests():\\n    pass\\n```')\n"
            "assert r is not None and extract_test_function(r, 'run_tests').source\n")
    run = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "SyntaxWarning" not in run.stderr
