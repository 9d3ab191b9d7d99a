"""The arms of the experiment: what each changes (projection mode, basis control, pair set, loophole,
published intervention).

The method arms and their controls read only the foolable environment reward; the oracle labels go
to the logs (method §6). `rl_baseline` trains without the loophole (no hint, ground-truth reward).
The published interventions sit in the same harness for comparison: monitor arms (ground-truth,
probe, LLM judge) use the oracle or a detector trained on it by design and are reported as monitor
baselines; inoculation and advantage modification are oracle-free; TDGA never reads a label but its
warm-up trains on the loophole-free reward, i.e. it knows where the loophole is: its own kind.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    name: str
    mode: str  # projecting-optimizer mode: measure | erase | route | keep
    control: str = "none"  # basis control: none | random | shuffled | nonhack
    placebo: bool = False  # extract from the configured placebo pair set instead
    loophole: bool = True  # False: no-hint prompts and a reward without the loophole term
    intervention: str | None = None  # a published intervention (interventions/)
    loophole_aware: bool = False  # uses a loophole-free environment (knowledge of the loophole), not the oracle
    refresh_every: int = 0  # re-extract the basis from the current adapter every N steps (projection.refresh_every wins)
    monitor: str | None = None  # a monitor arm's detector: gt | probe | judge
    action: str | None = None  # what a monitor arm does with a flag: penalty (reward − p) | screening (advantage 0)
    description: str = ""

    def __post_init__(self):
        assert (self.monitor is None) == (self.action is None), f"{self.name}: a monitor needs an action and vice versa"
        assert self.monitor is None or self.intervention == f"{self.monitor}_{self.action}", self.name

    @property
    def kind(self) -> str:
        """method | control | baseline | monitor (oracle-trained, by design) | published (oracle-free)
        | published (loophole-aware)"""
        if self.intervention:
            return "monitor" if self.monitor else "published (loophole-aware)" if self.loophole_aware else "published"
        if self.control != "none" or self.placebo:
            return "control"
        return "method" if self.mode in ("erase", "route") else "baseline"


_ARMS = [
    Arm("vanilla", "measure", description="no intervention; logs cin / leak against the real basis"),
    Arm("erase", "erase", description="project the hack-ward part of each update away"),
    Arm("route", "route", description="move the hack-ward part into θ_hack; deploy with θ_hack = 0"),
    Arm("erase_refresh", "erase", refresh_every=10,
        description="erase with the basis re-extracted from the current adapter on the same pairs every N steps"),
    Arm("random", "erase", control="random", description="control: Haar-random basis of the same k"),
    Arm("shuffled", "erase", control="shuffled", description="control: hack/clean swapped on half the pairs"),
    Arm("nonhack", "erase", control="nonhack", description="control: clean-vs-clean contrasts"),
    Arm("placebo", "erase", placebo=True, description="control: the placebo pair set"),
    Arm("rl_baseline", "measure", loophole=False, description="no loophole: no hint, GT-only reward"),
    Arm("gt_penalty", "measure", intervention="gt_penalty", monitor="gt", action="penalty",
        description="monitor: −3 on the (strict) ground-truth hack label, with accuracy flips"),
    Arm("gt_screening", "measure", intervention="gt_screening", monitor="gt", action="screening",
        description="monitor: rollouts with the (loose) ground-truth label get zero advantage"),
    Arm("probe_penalty", "measure", intervention="probe_penalty", monitor="probe", action="penalty",
        description="monitor: −3 when a linear probe on the policy's activations fires"),
    Arm("probe_screening", "measure", intervention="probe_screening", monitor="probe", action="screening",
        description="monitor: zero advantage when the probe fires"),
    Arm("judge_penalty", "measure", intervention="judge_penalty", monitor="judge", action="penalty",
        description="monitor: −3 when an LLM judge says 1"),
    Arm("judge_screening", "measure", intervention="judge_screening", monitor="judge", action="screening",
        description="monitor: zero advantage when an LLM judge says 1"),
    Arm("inoculation", "measure", intervention="inoculation",
        description="training-time system prompt that asks for the exploit; evaluated with the normal prompt"),
    Arm("advantage_mod", "measure", intervention="advantage_mod",
        description="Wu & Tang: penalise rollouts whose activation score is above their group's (z > 0)"),
    Arm("tdga", "keep", intervention="tdga", loophole_aware=True,
        description="Deng et al.: keep only the part of each update inside the top-K subspace of a warm-up on the "
                    "loophole-free reward"),
]
ARMS = {a.name: a for a in _ARMS}
