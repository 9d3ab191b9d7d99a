"""The arms of the experiment: what each changes (projection mode, basis control, pair set, loophole).

Every method arm and control reads only the foolable environment reward; the oracle labels go to
the logs (method §6). `rl_baseline` trains without the loophole (no hint, ground-truth reward).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    name: str
    mode: str  # projecting-optimizer mode: measure | erase | route
    control: str = "none"  # basis control: none | random | shuffled | nonhack
    pairs: str | None = None  # replaces the configured pair set (placebo)
    loophole: bool = True  # False: no-hint prompts and a reward without the loophole term
    description: str = ""


ARMS = {
    "vanilla": Arm("vanilla", "measure", description="no intervention; logs cin / leak against the real basis"),
    "erase": Arm("erase", "erase", description="project the hack-ward part of each update away"),
    "route": Arm("route", "route", description="move the hack-ward part into θ_hack; deploy with θ_hack = 0"),
    "random": Arm("random", "erase", control="random", description="control: Haar-random basis of the same k"),
    "shuffled": Arm("shuffled", "erase", control="shuffled", description="control: hack/clean swapped on half the pairs"),
    "nonhack": Arm("nonhack", "erase", control="nonhack", description="control: clean-vs-clean contrasts"),
    "placebo": Arm("placebo", "erase", pairs="leetcode_placebo", description="control: the placebo pair set"),
    "rl_baseline": Arm("rl_baseline", "measure", loophole=False, description="no loophole: no hint, GT-only reward"),
}
