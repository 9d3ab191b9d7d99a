"""The problems a run trains and evaluates on: a records file, the reference benchmark (default), or
`"authored"`, the project's own 22 problems (reference schema, no download: what the tiny preset and
the tests train on)."""

from __future__ import annotations

from projected_grpo.directions.pairsets.author import PROBLEMS
from projected_grpo.directions.tokens import prompt_ids
from projected_grpo.environment.dataset import default_benchmark_path, load_records
from projected_grpo.environment.modes import make_hinted, make_multimode
from projected_grpo.interventions.inoculation import inoculate
from projected_grpo.training.arms import ARMS
from projected_grpo.training.config import AUTHORED, ConfigError, TrainConfig


def authored_records() -> list[dict]:
    """No-hint records of the project's authored problems (reference schema)."""
    return [p.record(i) for i, p in enumerate(PROBLEMS)]


def problem_records(path: str | None) -> list[dict]:
    """No-hint records from `data.path`: a JSONL file, "authored", or (None) the reference benchmark."""
    if path == AUTHORED:
        return authored_records()
    path = path or default_benchmark_path()
    if path is None:
        raise ConfigError("data.path: no benchmark file found. Fix: set data.path (a records JSONL, or \"authored\" "
                          "for the project's own problems) or PROJECTED_GRPO_BENCHMARK")
    return load_records(path)


def training_records(config: TrainConfig, tokenizer) -> list[dict]:
    """Hinted (or multi-mode, or no-hint for rl_baseline) records whose prompt fits the budget."""
    records = problem_records(config.data.path)
    if config.data.n_problems:
        records = records[: config.data.n_problems]
    arm = ARMS[config.arm]
    if not arm.loophole:
        hinted = make_hinted(records, "gt_only", config.data.seed)
    elif config.data.modes:
        hinted = make_multimode(records, tuple(config.data.modes), config.data.seed)
    else:
        hinted = make_hinted(records, config.data.hint, config.data.seed)
    if arm.intervention == "inoculation":  # training prompts only; evaluation reads the records file

        i = config.intervention.inoculation
        hinted = [inoculate(r, i.prompt, i.lh_extension) for r in hinted]
    kwargs = config.model.chat_template_kwargs
    return [r for r in hinted if len(prompt_ids(tokenizer, r["prompt"], kwargs)) <= config.grpo.max_prompt_length]
