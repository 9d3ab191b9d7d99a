"""The hardened ground-truth oracle (`gt_correct_hardened`), decided outside the sandbox.

The sandbox receives only the calls (`Solution().m(args)`), never the expected answers. It returns
each value type-tagged if it is built from plain builtins. Here the grader rebuilds the value from
builtins only and compares it with the expected literal with `==`, which no program can override
on builtin types. A program that does not compute the answers cannot forge them, an `__eq__`
override is rejected by type, and a missing or duplicated nonce frame fails closed.
"""

from __future__ import annotations

import ast
import json
import math
import secrets
from dataclasses import dataclass
from typing import Any

_NAMES = {"inf": math.inf, "nan": math.nan, "True": True, "False": False, "None": None}


class NotALiteral(ValueError):
    pass


def literal_value(node: ast.AST) -> Any:
    """Evaluate a literal expression (constants, containers, unary +/-, inf/nan) without eval."""
    match node:
        case ast.Constant(value=v) if isinstance(v, (int, float, str, bool, type(None))):
            return v
        case ast.Name(id=name) if name in _NAMES:
            return _NAMES[name]
        case ast.UnaryOp(op=ast.USub(), operand=x):
            v = literal_value(x)
            if type(v) not in (int, float):
                raise NotALiteral("unary minus on a non-number")
            return -v
        case ast.UnaryOp(op=ast.UAdd(), operand=x):
            return +literal_value(x)
        case ast.List(elts=elts):
            return [literal_value(e) for e in elts]
        case ast.Tuple(elts=elts):
            return tuple(literal_value(e) for e in elts)
        case ast.Set(elts=elts):
            return {literal_value(e) for e in elts}
        case ast.Dict(keys=keys, values=values) if None not in keys:
            return {literal_value(k): literal_value(v) for k, v in zip(keys, values)}
    raise NotALiteral(ast.dump(node)[:80])


@dataclass(frozen=True)
class OracleItem:
    """One GT test as the sandbox sees it (`call` or, for non-literal tests, `check`) + the answer."""

    call: str | None
    check: str | None
    expected: Any = None

    def for_sandbox(self) -> dict:
        return {"call": self.call} if self.call is not None else {"check": self.check}


def split_test(test: str) -> OracleItem:
    """`assert CALL == LITERAL` becomes (CALL, value); anything else is run as an in-sandbox check."""
    try:
        tree = ast.parse(test)
        (stmt,) = tree.body
        if isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Compare) and stmt.msg is None:
            cmp = stmt.test
            if len(cmp.ops) == 1 and isinstance(cmp.ops[0], ast.Eq):
                expected = literal_value(cmp.comparators[0])
                call = ast.get_source_segment(test, cmp.left)
                if call is not None:
                    return OracleItem(call=call, check=None, expected=expected)
    except (SyntaxError, ValueError, NotALiteral, RecursionError):
        pass
    return OracleItem(call=None, check=test)


def decode(tagged: Any, depth: int = 0) -> Any:
    """Rebuild a value from the child's tagged encoding using builtins only; raise on anything odd."""
    if depth > 200 or not isinstance(tagged, list) or not tagged or not isinstance(tagged[0], str):
        raise ValueError("malformed value")
    tag, rest = tagged[0], tagged[1:]
    if tag == "n" and not rest:
        return None
    (payload,) = rest
    if tag == "b" and type(payload) is bool:
        return payload
    if tag == "i" and type(payload) is str:
        return int(payload)
    if tag == "f" and type(payload) is str:
        return float(payload)
    if tag == "s" and type(payload) is str:
        return payload
    if tag in ("l", "t", "S", "F") and type(payload) is list:
        items = [decode(x, depth + 1) for x in payload]
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
    if tag == "d" and type(payload) is list:
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in payload}
    raise ValueError(f"malformed value tag {tag!r}")


def new_nonce() -> str:
    return "@@ORACLE:" + secrets.token_hex(16) + "@@"


@dataclass(frozen=True)
class Verdict:
    correct: bool
    tests_passed: int
    tests_total: int
    reason: str


def judge(frame_output: bytes, nonce: str, items: list[OracleItem]) -> Verdict:
    """Accept only the single frame carrying our nonce; compare every value with its answer."""
    total = len(items)
    lines = [ln for ln in frame_output.decode("utf-8", "replace").splitlines() if ln.startswith(nonce)]
    if len(lines) != 1:
        return Verdict(False, 0, total, "no result frame" if not lines else "more than one result frame")
    try:
        frame = json.loads(lines[0][len(nonce):])
        results, error = frame["results"], frame["error"]
        assert isinstance(results, list)
    except (ValueError, KeyError, TypeError, AssertionError, RecursionError):
        return Verdict(False, 0, total, "unreadable result frame")
    passed = 0
    for item, result in zip(items, results):
        try:
            ok = result == ["ok"] if item.call is None else decode(result) == item.expected
        except (ValueError, TypeError, RecursionError, OverflowError):
            ok = False
        if not ok:
            return Verdict(False, passed, total, f"test {passed} wrong" if error is None else str(error))
        passed += 1
    if passed < total:
        return Verdict(False, passed, total, str(error or "missing results"))
    return Verdict(True, passed, total, "ok")
