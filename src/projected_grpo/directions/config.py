"""How a gradient-space basis is extracted, torch-free so that the CLI can take its option defaults from it."""

from __future__ import annotations

from dataclasses import dataclass

CONTROLS = ("none", "random", "shuffled", "nonhack")


@dataclass(frozen=True)
class ExtractionConfig:
    k: int = 12  # rows extracted per module
    tau: float = 0.0  # per-module relative floor S_i/S_0
    global_floor: float = 0.25  # drop this fraction of the smallest S_i pooled over modules
    control: str = "none"  # none | random | shuffled | nonhack (the placebo control is a pair set, not this)
    seed: int = 0  # seeds the control's draw and the holdout split
    batch_size: int = 8
    holdout: float = 0.0  # share of pairs left out of this extraction to score it (diagnostics.heldout_positive)

    def __post_init__(self):
        if self.control not in CONTROLS:
            raise ValueError(f"control {self.control!r}: choose one of {', '.join(CONTROLS)} (placebo = its pair set)")
        for name, value, ok, rule in (("k", self.k, self.k >= 1, ">= 1"), ("tau", self.tau, self.tau >= 0, ">= 0"),
                                      ("global_floor", self.global_floor, 0 <= self.global_floor < 1, "in [0, 1)"),
                                      ("holdout", self.holdout, 0 <= self.holdout < 1, "in [0, 1)"),
                                      ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1")):
            if not ok:
                raise ValueError(f"{name} = {value}: must be {rule}")
