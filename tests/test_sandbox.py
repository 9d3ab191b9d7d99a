"""Isolation detection, refusal without isolation, and the unisolated opt-in."""

import pytest

from projected_grpo.environment.grader import Grader
from projected_grpo.environment.sandbox import IsolationError, Sandbox
from projected_grpo.environment.specimens import fence


def test_bwrap_isolation_detected_and_described(sandbox):
    iso = sandbox.isolation.as_dict()
    assert iso["level"] == "bwrap" and "isolated" in iso["network"] and iso["bwrap_version"]


def test_refuses_without_isolation_unless_opted_in(monkeypatch, by_id):
    monkeypatch.setenv("PATH", "/nonexistent")  # no bwrap on PATH
    with pytest.raises(IsolationError, match="--allow-unisolated"):
        Sandbox(workers=1)
    sandbox = Sandbox(workers=1, allow_unisolated=True)
    assert sandbox.isolation.level == "unisolated" and sandbox.isolation.network == "NOT isolated"
    record = by_id[3243]
    grade = Grader(sandbox).grade([(record, fence(record["canonical_solution"]))])[0]
    assert grade.fields["eq_correct"] and grade.fields["gt_correct_hardened"]
    sandbox.close()


def test_a_dead_fork_server_is_replaced():
    sandbox = Sandbox(workers=1)
    assert sandbox.run("reference", {"code": "print(1)"}).returncode == 0
    sandbox._servers[0].proc.kill()
    assert sandbox.run("reference", {"code": "pass"}).killed  # the run in flight is reported as killed
    assert sandbox.run("reference", {"code": "pass"}).returncode == 0  # and the slot restarts
    sandbox.close()
