"""A pytest plugin (loaded by pyproject's addopts): when PROJECTED_GRPO_ALLOWED_SKIPS names a file (CI
sets it to .ci/allowed_skips), any skipped test not listed there fails the run, since a test that
skips hides whatever it was meant to catch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):  # an xfail is not a skip
        _skipped.append(f"{report.nodeid}: {report.longrepr[-1] if isinstance(report.longrepr, tuple) else ''}")


def pytest_sessionfinish(session, exitstatus):
    allowed_file = os.environ.get("PROJECTED_GRPO_ALLOWED_SKIPS")
    if not allowed_file:
        return
    lines = [line.split("#", 1)[0].strip() for line in Path(allowed_file).read_text().splitlines()]
    allowed = {line for line in lines if line}
    unexpected = [s for s in _skipped if s.split(": ", 1)[0] not in allowed]
    if unexpected:
        print(f"\n{len(unexpected)} test(s) skipped that {allowed_file} does not allow:\n  " + "\n  ".join(unexpected))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
