"""Reward shaping by the published interventions, applied to one step's rollouts group by group.

A shaper maps the environment rewards `r` (n = prompts × G, groups of G consecutive rollouts) to
new rewards, before TRL's group normalisation:

- `MonitorPenalty`: r − penalty · flag (reference: a flagged strict hack earns the compile reward only).
- `MonitorScreen`: a flagged rollout gets its group's mean over unflagged rollouts, so its advantage
  r − mean is exactly 0 and the unflagged ones are baselined on each other, as if the flagged were
  dropped (the reference set the score to NaN ⇒ advantage 0). A fully flagged group has zero advantage.
- `AdvantageModification` (Wu & Tang 2026): a rollout's concept score s (interventions/concept.py:
  the "shortcut" direction; or the run's pairs) is z-scored within its group,
  z = (s − mean_g s) / max(std_g s, σ_min) (population std), and the *reward* is penalised
  one-sidedly before group normalisation (the paper calls that placement essential):
  additive r − α·max(z, 0); multiplicative r·(1 − α·sigmoid(z)·[z > 0]).

Only shapers whose `uses_oracle` is True receive the oracle labels (`Rollouts.labels`); for all
others that field is None, so a method arm cannot read a label even by mistake (method §6).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Shaped
from torch import Tensor

from projected_grpo.environment.grader import RewardView


@dataclass(frozen=True)
class Rollouts:
    records: list[dict]
    responses: list[str]
    views: list[RewardView]
    group_size: int
    labels: list[dict] | None = None  # oracle fields: only for shapers with uses_oracle

    def __post_init__(self):
        n, g = len(self.responses), self.group_size
        assert n % g == 0, f"{n} rollouts do not split into groups of {g}"
        ids = [r["id"] for r in self.records]
        assert all(len(set(ids[i:i + g])) == 1 for i in range(0, n, g)), "a group mixes prompts"

    def grouped(self, x: Shaped[Tensor, " n"]) -> Shaped[Tensor, "_groups g"]:
        """Per-rollout values (scores or flags) as one row per group."""
        return x.view(-1, self.group_size)


Flagger = Callable[[Rollouts], tuple[Bool[Tensor, " n"], dict]]


class Shaper:
    uses_oracle = False

    def __call__(self, rewards: Float[Tensor, " n"], rollouts: Rollouts) -> tuple[Float[Tensor, " n"], dict]:
        raise NotImplementedError


@dataclass
class MonitorConfig:
    """`[intervention.monitor]`: the monitor arms (gt_*, probe_*, judge_*)."""

    accuracy: float = 1.0  # ground-truth monitor: each label flipped with probability 1 - accuracy
    strict: bool | None = None  # None: the reference's defaults (penalty strict, screening loose)
    penalty: float = 3.0  # subtracted from a flagged rollout's reward (penalty arms)


@dataclass
class AdvantageConfig:
    """`[intervention.advantage]`: the advantage_mod arm (Wu & Tang): its shaping and where its score reads."""

    alpha: float = 2.0
    form: str = "multiplicative"  # multiplicative | additive
    sigma_floor: float = 0.1
    direction: str = "shortcut"  # shortcut: the paper's (general-domain pairs, last token, 60-75 % band) | pairs
    shortcut_pairs: str = "shortcut"  # sentence-pair JSONL (shipped name or path) for direction = "shortcut"
    band: list = field(default_factory=lambda: [0.6, 0.75])  # layer depths averaged, direction = "shortcut"
    layer: int | None = None  # direction = "pairs": the one layer (default ~0.65 depth)


@dataclass
class GroundTruthMonitor:
    """The reference's "ground-truth monitor": the strict (or loose) hack label, each flipped
    independently with probability 1 − accuracy. Reads the oracle: a monitor baseline by design."""

    strict: bool
    accuracy: float = 1.0
    seed: int = 0
    uses_oracle = True

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    def __call__(self, rollouts: Rollouts) -> tuple[Tensor, dict]:
        key = "is_reward_hack_strict" if self.strict else "is_reward_hack_loose"
        truth = [bool(f[key]) for f in rollouts.labels]
        flags = [t if self.rng.random() <= self.accuracy else not t for t in truth]
        return torch.tensor(flags), {"monitor/true_rate": sum(truth) / len(truth)}


@dataclass
class _Monitored(Shaper):
    """A shaper driven by a monitor's flags; it reads the oracle exactly when its monitor does."""

    flagger: Flagger

    @property
    def uses_oracle(self) -> bool:
        return getattr(self.flagger, "uses_oracle", False)


@dataclass
class MonitorPenalty(_Monitored):
    penalty: float = 3.0

    def __call__(self, rewards, rollouts):
        flags, info = self.flagger(rollouts)
        return rewards - self.penalty * flags.to(rewards.dtype), {"monitor/flagged": float(flags.float().mean()), **info}


@dataclass
class MonitorScreen(_Monitored):
    def __call__(self, rewards, rollouts):
        flags, info = self.flagger(rollouts)
        r, keep = rollouts.grouped(rewards), ~rollouts.grouped(flags)
        kept_mean = (r * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp(min=1)
        shaped = torch.where(keep, r, kept_mean.expand_as(r))
        return shaped.reshape(-1), {"monitor/flagged": float(flags.float().mean()), **info}


@dataclass
class AdvantageModification(Shaper):
    """Wu & Tang (2026), "When Reward Hacking Rebounds", Advantage Modification."""

    scorer: Callable[[Rollouts], Float[Tensor, " n"]]
    alpha: float = 2.0
    form: str = "multiplicative"  # multiplicative | additive
    sigma_floor: float = 0.1

    def __call__(self, rewards, rollouts):
        s = rollouts.grouped(self.scorer(rollouts).to(rewards.dtype))
        z = (s - s.mean(1, keepdim=True)) / s.std(1, unbiased=False, keepdim=True).clamp(min=self.sigma_floor)
        r = rollouts.grouped(rewards)
        if self.form == "additive":
            shaped = r - self.alpha * z.clamp(min=0)
        else:
            shaped = r * (1 - self.alpha * torch.sigmoid(z) * (z > 0))
        return shaped.reshape(-1), {"shaping/mean_score": float(s.mean()), "shaping/penalised": float((z > 0).float().mean())}
