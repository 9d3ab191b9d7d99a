"""The run-config sections that are the library's own configs: `[adapter]` is an `AdapterConfig`, `[basis]`
an `ExtractionConfig`, `[projection]` a `ProjectionConfig`, each adding only training-level fields. A field
that the run or its arm supplies is `None` here and is resolved in this module, into the plain library
config that the run hands down (so basis cache keys and adapter files see only library fields)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from projected_grpo.adapters.config import AdapterConfig
from projected_grpo.directions.config import ExtractionConfig
from projected_grpo.projection.optimizer import ProjectionConfig
from projected_grpo.training.arms import Arm

# Fields that moved (old dotted name → new): a user's config naming the old one gets one error naming the new
# place; a run's saved config.json (written before the move) reads back under the new names. Order matters
# where an old field's name is now a table: intervention.probe moves before anything moves into it.
RENAMED = {
    "basis.k_extract": "basis.k",
    "basis.heldout": "basis.leak_heldout",
    "intervention.accuracy": "intervention.monitor.accuracy",
    "intervention.strict": "intervention.monitor.strict",
    "intervention.penalty": "intervention.monitor.penalty",
    "intervention.probe": "intervention.probe.path",
    "intervention.probe_threshold": "intervention.probe.threshold",
    **{f"intervention.judge_{k}": f"intervention.judge.{k}"
       for k in ("base_url", "model", "api_key_env", "concurrency", "timeout", "retries")},
    "intervention.prompt": "intervention.inoculation.prompt",
    "intervention.lh_extension": "intervention.inoculation.lh_extension",
    **{f"intervention.{k}": f"intervention.advantage.{k}"
       for k in ("alpha", "form", "sigma_floor", "direction", "shortcut_pairs", "band", "layer")},
    "intervention.trusted_k": "intervention.tdga.trusted_k",
    "intervention.warmup_steps": "intervention.tdga.warmup_steps",
}


def _library(section, library_cls, **supplied):
    """The library config holding `section`'s values of its fields, with `supplied` in place of the open ones."""
    return library_cls(**{f.name: getattr(section, f.name) for f in fields(library_cls)} | supplied)


def _check_set_fields(section, library_cls) -> None:
    """The library's own checks on the fields that are set (an open field is checked once resolved)."""
    library_cls(**{f.name: v for f in fields(library_cls) if (v := getattr(section, f.name)) is not None})


@dataclass(frozen=True)
class AdapterSection(AdapterConfig):
    seed: int | None = None  # fixed_a_lora / peft_lora: seeds A's initialisation (None: the run's seed)

    def resolve(self, run_seed: int) -> AdapterConfig:
        return _library(self, AdapterConfig, seed=run_seed if self.seed is None else self.seed)


@dataclass(frozen=True)
class BasisConfig(ExtractionConfig):
    """The extraction (k, tau, global_floor, ...) and what the run extracts from and projects with."""

    control: str | None = None  # always the arm's (validate refuses a value: reports classify runs by arm)
    seed: int | None = None  # the control's draw; None: the run's seed (0 without a control, so seeds share the cache)
    pairs: str = "leetcode_mechanism"  # shipped name or JSONL path ("organism": the organism's own set)
    placebo_pairs: str = "leetcode_placebo"  # what the placebo arm extracts from instead
    space: str = "gradient"  # gradient | activation
    k_use: int = 5  # rows per module projected with (of the k extracted)
    modes: list | None = None  # extract from these pair modes only (weak-detector test)
    layer: int | None = None  # activation space: residual-stream layer (default ~65% depth)
    m: int | None = None  # activation space: top-m singular subspace of each W (default: full)
    leak_heldout: float = 0.25  # share of each mode's pairs kept out of the projection basis; their own basis
    #                             measures `projection/leak_heldout` every step (a leak that can fail)
    leak_heldout_seed: int = 0  # which pairs are kept out

    def __post_init__(self):
        _check_set_fields(self, ExtractionConfig)

    def extraction(self, arm: Arm, run_seed: int) -> ExtractionConfig:
        assert self.control is None, "basis.control is the arm's (training.config.validate refuses a value)"
        control = arm.control
        # a control is a fresh draw per training seed (recorded in the basis metadata), not one draw for all
        seed = self.seed if self.seed is not None else run_seed if control != "none" else 0
        return _library(self, ExtractionConfig, control=control, seed=seed)


@dataclass(frozen=True)
class ProjectionSection(ProjectionConfig):
    mode: str | None = None  # always the arm's (validate refuses a value: reports classify runs by arm)
    gate: str | None = None  # None: two_sided for an activation-space basis (the only one there), else one_sided
    refresh_every: int | None = None  # re-extract and replace the basis every N steps (None: the arm's; 0: never)

    def __post_init__(self):
        _check_set_fields(self, ProjectionConfig)

    def resolve(self, arm: Arm, basis_space: str) -> ProjectionConfig:
        assert self.mode is None, "projection.mode is the arm's (training.config.validate refuses a value)"
        return _library(self, ProjectionConfig, mode=arm.mode,
                        gate=self.gate or ("two_sided" if basis_space == "activation" else "one_sided"),
                        refresh_every=arm.refresh_every if self.refresh_every is None else self.refresh_every)
