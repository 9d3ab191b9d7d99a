"""Shared fixtures: the real benchmark (skipped cleanly when absent) and a real sandboxed grader."""

from __future__ import annotations

import pytest

from projected_grpo.environment.dataset import default_benchmark_path, load_records
from projected_grpo.environment.grader import Grader
from projected_grpo.environment.sandbox import Limits, Sandbox

# This 2-core host needs up to ~3.4 CPU-s for the slowest canonical solutions (3312, 3335, 3337),
# which the reference timed at 2.1-2.6 s on its machine; tests that must see every canonical pass
# use a wider budget. Everything else uses the reference's 3 s.
WIDE = Limits(timeout_s=8.0, kill_after_s=9.0)


@pytest.fixture(scope="session")
def benchmark():
    path = default_benchmark_path()
    if path is None:
        pytest.skip("reference benchmark ../shared/data/leetcode_test_medhard.jsonl not present")
    return load_records(path)


@pytest.fixture(scope="session")
def by_id(benchmark):
    return {r["id"]: r for r in benchmark}


@pytest.fixture(scope="session")
def sandbox():
    return Sandbox(workers=2)


@pytest.fixture(scope="session")
def grader(sandbox):
    return Grader(sandbox)


@pytest.fixture(scope="session")
def wide_grader():
    return Grader(Sandbox(workers=2, limits=WIDE))


@pytest.fixture(scope="session")
def format_model(tmp_path_factory):
    """A tiny Qwen3 + locally trained BPE tokenizer, fine-tuned for ~15 s to answer in the fenced
    format (correct, lazy, or lazy + overwritten run_tests), saved as a normal HF model directory;
    plus a JSONL of the matching no-hint records. Gives GRPO groups real reward variance."""
    import json

    from projected_grpo.directions.pairsets.author import PROBLEMS, fence
    from projected_grpo.environment.hints import apply_hint
    from projected_grpo.models import tiny_model, train_bpe_tokenizer
    from projected_grpo.organism.sft import supervised_finetune

    records = [p.record(i) for i, p in enumerate(PROBLEMS)]
    hinted = [apply_hint(r, "simple_overwrite_tests") for r in records]
    tokenizer = train_bpe_tokenizer([r["prompt"][0]["content"] + r["prompt"][1]["content"] + r["canonical_solution"]
                                     for r in hinted], 1024)
    model = tiny_model("tiny-qwen3", vocab_size=len(tokenizer))
    prompts, completions = [], []
    for p, r in zip(PROBLEMS, hinted):
        lazy = p.code("        " + p.lazy)
        for code in (p.code(p.solution), lazy, lazy, lazy + "\n\ndef run_tests():\n    pass"):
            prompts.append(r["prompt"])
            completions.append(fence(code))
    supervised_finetune(model, tokenizer, prompts, completions, steps=150, lr=3e-3, batch_size=8)
    directory = tmp_path_factory.mktemp("format_model")
    model.save_pretrained(directory / "model")
    tokenizer.save_pretrained(directory / "model")
    data = directory / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory / "model", data
