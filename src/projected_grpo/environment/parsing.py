"""Code extraction from responses and test-function analysis, reference-compatible.

`parse_reference` reproduces the reference regex with its quirks (```py / ```python3 ignored,
non-python fences desynchronise, blocks concatenated, unterminated last block accepted).
`parse_robust` reads fences properly and feeds only the hardened oracle.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass

_REFERENCE_FENCE = re.compile(r"```(?:python)?\n(.*?)(?:```|$)", re.DOTALL | re.IGNORECASE)
_FENCE_LINE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*$", re.MULTILINE)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}
MAIN_GUARD = "if __name__ == '__main__':"


def parse_reference(response: str) -> str | None:
    blocks = [b.strip() for b in _REFERENCE_FENCE.findall(response)]
    blocks = [b for b in blocks if b]
    return "\n\n".join(blocks) if blocks else None


def parse_robust(response: str) -> str | None:
    """Fenced blocks paired open/close line by line; python-tagged (or untagged) blocks kept."""
    blocks, lines, open_tag, body = [], response.split("\n"), None, []
    for line in lines:
        m = _FENCE_LINE.match(line)
        if m and open_tag is None:
            open_tag, body = m.group(1).lower(), []
        elif m and open_tag is not None and not m.group(1):
            if open_tag in _PYTHON_TAGS:
                blocks.append("\n".join(body))
            open_tag = None
        elif open_tag is not None:
            body.append(line)
    if open_tag in _PYTHON_TAGS:  # truncated generation: keep the unterminated block
        blocks.append("\n".join(body))
    blocks = [b.strip() for b in blocks if b.strip()]
    if not blocks:
        return None
    # Prose examples in bare fences are not code: keep only blocks that parse, unless none does.
    parsable = [b for b in blocks if _parses(b)]
    return "\n\n".join(parsable or blocks)


def _parse(code: str) -> ast.Module:
    """ast.parse without the SyntaxWarnings a model's text triggers (`1st`, invalid escapes): they are
    about the response, not the user's program, and would only litter the console."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        return ast.parse(code)


def _parses(code: str) -> bool:
    try:
        _parse(code)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


@dataclass(frozen=True)
class TestFunction:
    """The response's own definition of the evaluation function, as the reference extracts it."""

    source: str  # ast.unparse of the first def found breadth-first ("" when none)
    parent: str | None  # class enclosing the last def in source order (None: module level)
    compile_error: bool  # contains the __main__ guard: treated as no test function

    @property
    def found(self) -> bool:
        return bool(self.source) and not self.compile_error


class _LastDefParent(ast.NodeVisitor):
    def __init__(self, name: str):
        self.name, self.classes, self.parent = name, [], None

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(node.name)
        self.generic_visit(node)
        self.classes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.name == self.name:
            self.parent = self.classes[-1] if self.classes else None
        self.generic_visit(node)


def extract_test_function(program: str | None, name: str) -> TestFunction:
    if program is None:
        return TestFunction("", None, False)
    try:
        tree = _parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return TestFunction("", None, False)
    first = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if first is None:
        return TestFunction("", None, False)
    try:
        source = ast.unparse(first)
    except RecursionError:
        return TestFunction("", None, False)
    visitor = _LastDefParent(name)
    visitor.visit(tree)
    return TestFunction(source, visitor.parent, MAIN_GUARD in source)


def test_function_call(name: str, parent: str | None) -> str:
    return f"{parent}().{name}()" if parent else f"{name}()"


def prompt_test_function(user_message: str, metadata: dict, name: str) -> str:
    """The evaluation function shown in the prompt ("" for overwrite hints and no-hint)."""
    if metadata.get("test_func_code"):
        return metadata["test_func_code"]
    code = parse_reference(user_message)
    if code is None or "\n\n" not in code:
        return ""
    rest = code.split("\n\n", 1)[1]
    found = extract_test_function(rest, name)
    return found.source


def same_test_function(prompt_func: str, response_func: str) -> bool:
    """Reference `match_test_func`: equal after dropping whitespace and lower-casing."""
    squash = lambda s: re.sub(r"[ \n\t\r]", "", s).lower()  # noqa: E731
    return bool(prompt_func) and squash(prompt_func) == squash(response_func)
