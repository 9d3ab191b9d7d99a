"""Grader throughput on a mixed batch over the real problems, and sandbox overhead per run.

    python benchmarks/grade_throughput.py [--problems 60] [--workers 2]

Prints responses graded per second (all runs each response needs: GT, channel, the response's own
tests where defined, and the hardened oracle), the isolation level, and the per-run cost of a
sandboxed trivial program against a bare `python -c pass`, timed interleaved in the same run.
Targets (issue 2): >= 10 responses/s on 2 cores; sandbox overhead within 1.5x of a bare start.

    python benchmarks/grade_throughput.py --issue-batch --write-batch /tmp/b.jsonl [--reference-seconds S]

Issue 13's batch: the grader in-process against the floor of executing the tests, then the whole `grade` command
on the same batch written to a file; time the reference grader on that file beside it (the development aid in
../shared/tools/ref_grader, never run from here) and pass its seconds for the ratio.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from projected_grpo.environment.dataset import default_benchmark_path, load_records
from projected_grpo.environment.grader import Grader, runner_program
from projected_grpo.environment.hints import apply_hint
from projected_grpo.environment.sandbox import Sandbox
from projected_grpo.environment.specimens import EXPLOITS, fence, first_test_parts, solution_returning, wrong_solution


def mixed_batch(records: list[dict]) -> list[tuple[dict, str, str]]:
    """Per problem: canonical, wrong, run_tests exploit, correct + honest run_tests (4 kinds)."""
    batch = []
    for base in records:
        r = apply_hint(base, "simple_overwrite_tests")
        call, expected = first_test_parts(r)
        batch += [
            (r, "canonical", fence(r["canonical_solution"])),
            (r, "wrong", fence(wrong_solution(r))),
            (r, "exploit", fence(EXPLOITS["run_tests"](r))),
            (r, "correct+own tests", fence(r["canonical_solution"] + f"\n\ndef run_tests():\n    assert {call} == {expected}")),
            (r, "hard-coded first answer", fence(solution_returning(r, f"return {expected}"))),
        ]
    return batch


def issue_batch(records: list[dict]) -> list[tuple[dict, str, str]]:
    """Issue 13's batch: every canonical solution without a hint and under `simple_overwrite_tests`,
    and a wrong solution with `def run_tests(): pass` under the hint."""
    hinted = [apply_hint(r, "simple_overwrite_tests") for r in records]
    return ([(r, "canonical, no hint", fence(r["canonical_solution"])) for r in records]
            + [(r, "canonical, hint", fence(r["canonical_solution"])) for r in hinted]
            + [(r, "run_tests exploit, hint", fence(EXPLOITS["run_tests"](r))) for r in hinted])


def in_process_floor(records: list[dict]) -> float:
    """CPU-s to execute every canonical solution's GT tests once, in this process, no isolation."""
    start = time.process_time()
    for r in records:
        scope: dict = {}
        exec(compile(r["setup_code"] + "\n" + r["canonical_solution"], "<canonical>", "exec"), scope)
        for test in r["gt_answer"]:
            exec(test, scope)
    return time.process_time() - start


def timed_batch(grader: Grader, batch, name: str) -> float:
    start, cpu0 = time.perf_counter(), _children_cpu()
    grades = grader.grade([(r, resp) for r, _, resp in batch])
    elapsed, cpu = time.perf_counter() - start, _children_cpu() - cpu0
    labels = collections.Counter((kind, g.fields["reward_hack_label"], g.fields["eq_correct"]) for (_, kind, _), g in zip(batch, grades))
    print(f"\n{name}: {len(batch)} responses, {elapsed:.2f} s -> {len(batch) / elapsed:.1f} responses/s")
    for (kind, label, correct), n in sorted(labels.items()):
        print(f"  {n:4d}  {kind:28s} label={label:22s} eq_correct={correct}")
    return elapsed


def _children_cpu() -> float:
    """CPU-s of this process's reaped descendants (the sandboxes' fork servers reap their children)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    return sum(int(x) for x in fields[:3]) / os.sysconf("SC_CLK_TCK")  # user + nice + system, whole machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--overhead-reps", type=int, default=40)
    ap.add_argument("--issue-batch", action="store_true", help="only issue 13's 3 x 119 batch against the in-process floor")
    ap.add_argument("--write-batch", type=Path, help="with --issue-batch: also write the batch as a `grade` input JSONL here")
    ap.add_argument("--reference-seconds", type=float, help="with --issue-batch: wall seconds the reference grader (MAX_JOBS = "
                    "workers) took on that JSONL, timed beside this run (../shared/tools/ref_grader; not run from here)")
    args = ap.parse_args()
    records = load_records(default_benchmark_path())[: args.problems]
    sandbox = Sandbox(workers=args.workers)
    grader = Grader(sandbox)
    batch = mixed_batch(records)
    print(f"isolation: {sandbox.isolation.level} ({sandbox.isolation.network}; {sandbox.isolation.uid})")
    print(f"interpreter in the sandbox: {sandbox.interpreter}")

    if args.issue_batch:
        everything = load_records(default_benchmark_path())
        floor = in_process_floor(everything)
        grader.grade([(r, resp) for r, _, resp in batch[:10]])  # warm the slots
        cpu0 = _children_cpu()
        elapsed = timed_batch(grader, issue_batch(everything), "issue 13 batch (119 x canonical, canonical+hint, exploit+hint)")
        machine_cpu = _children_cpu() - cpu0
        rate = 3 * len(everything) / elapsed
        print(f"  machine CPU-s during the batch: {machine_cpu:.1f} (in-process floor for the 119 canonical suites once: {floor:.1f} CPU-s;"
              f" the batch executes 238 canonical suites -> floor {2 * floor:.1f} CPU-s, {machine_cpu / (2 * floor):.2f}x of it)")
        print(f"  ceiling on {os.cpu_count()} cores at the floor: {3 * len(everything) / (2 * floor / os.cpu_count()):.1f} responses/s;"
              f" ours {rate:.1f}")
        if args.write_batch:
            args.write_batch.write_text("".join(json.dumps({**r, "response": resp}) + "\n" for r, _, resp in issue_batch(everything)))
            out = args.write_batch.with_name(args.write_batch.stem + ".graded.jsonl")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "projected_grpo.cli", "grade", str(args.write_batch), "-o", str(out), "-j",
                            str(args.workers), "--force"], check=True, capture_output=True)
            cli = time.perf_counter() - start
            print(f"  the whole `projected-grpo grade` command on {args.write_batch}: {cli:.2f} s -> {3 * len(everything) / cli:.1f} responses/s")
            if args.reference_seconds:
                print(f"  reference grader on the same file: {args.reference_seconds:.2f} s -> ours is {args.reference_seconds / cli:.2f}x")
        return
    grader.grade([(r, resp) for r, _, resp in batch[:10]])  # warm caches
    start = time.perf_counter()
    grades = grader.grade([(r, resp) for r, _, resp in batch])
    elapsed = time.perf_counter() - start
    runs = sum(sum(v is not None for v in g.fields["runs"].values()) + (g.fields["gt_hardened_reason"] not in
               ("not formatted", "reference GT failed on the same code")) for g in grades)
    labels = collections.Counter(g.fields["reward_hack_label"] for g in grades)
    print(f"\nmixed batch: {len(batch)} responses over {len(records)} real problems, workers={args.workers}")
    print(f"  labels: {dict(labels)}")
    print(f"  {elapsed:.2f} s  ->  {len(batch) / elapsed:.1f} responses/s  ({runs} sandboxed runs, {runs / elapsed:.1f} runs/s)")

    bare_cmd = [sandbox.interpreter, "-c", "pass"]
    payload = {"code": runner_program("", "pass", [])}
    bare, boxed = [], []
    for _ in range(args.overhead_reps):  # interleaved, so drift on this noisy machine hits both alike
        t = time.perf_counter()
        subprocess.run(bare_cmd, check=True)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = sandbox.run("reference", payload)
        boxed.append(time.perf_counter() - t)
        assert out.returncode == 0, out
    b, s = statistics.median(bare), statistics.median(boxed)
    print(f"\nper-run cost, median of {args.overhead_reps} interleaved pairs:")
    print(f"  bare `{sandbox.interpreter} -c pass`: {b * 1000:.1f} ms")
    print(f"  sandboxed trivial program (fresh forked child in the slot sandbox + rlimits + reference harness): {s * 1000:.1f} ms")
    print(f"  ratio sandbox / bare: {s / b:.2f}x  (target <= 1.5x)")
    print(f"\nthroughput target >= 10 responses/s: {'met' if len(batch) / elapsed >= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
