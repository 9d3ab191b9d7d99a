"""The `[intervention]` table (one sub-table per published intervention, each defined beside its code) and
what an arm builds from it: the reward shaper (monitors, advantage modification)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from projected_grpo.directions.activation import default_layer, extract_activation_direction, response_means
from projected_grpo.interventions.concept import LastTokenScorer, layer_band, load_sentence_pairs, shortcut_direction
from projected_grpo.interventions.inoculation import InoculationConfig
from projected_grpo.interventions.judge import JudgeClient, JudgeConfig, JudgeMonitor
from projected_grpo.interventions.probe import Probe, ProbeConfig
from projected_grpo.interventions.shaping import (
    AdvantageConfig,
    AdvantageModification,
    GroundTruthMonitor,
    MonitorConfig,
    MonitorPenalty,
    MonitorScreen,
    Rollouts,
    Shaper,
)
from projected_grpo.interventions.tdga import TDGAConfig


@dataclass
class InterventionConfig:
    """`[intervention]`: one sub-table per published intervention; an arm reads only its own."""

    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    inoculation: InoculationConfig = field(default_factory=InoculationConfig)
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    tdga: TDGAConfig = field(default_factory=TDGAConfig)


@dataclass
class ActivationScorer:
    """Response-averaged activation of the *current* policy at `layer`, projected on `direction`."""

    model: torch.nn.Module
    tokenizer: object
    layer: int
    direction: Float[Tensor, " d"]
    chat_template_kwargs: dict | None = None

    def activations(self, rollouts: Rollouts) -> Float[Tensor, "n d"]:
        was_training = self.model.training
        self.model.eval()
        acts = response_means(self.model, self.tokenizer, [r["prompt"] for r in rollouts.records], rollouts.responses,
                              self.layer, batch_size=16, chat_template_kwargs=self.chat_template_kwargs)
        self.model.train(was_training)
        return acts

    def __call__(self, rollouts: Rollouts) -> Float[Tensor, " n"]:
        return self.activations(rollouts) @ self.direction


@dataclass
class ProbeMonitor:
    """A trained probe applied to the current policy's activations (reference §6.3)."""

    probe: Probe
    scorer: ActivationScorer
    threshold: float
    uses_oracle = False  # at train time it reads activations only; its training used labels (a monitor arm)

    def __call__(self, rollouts: Rollouts):
        p = self.probe.scores(self.scorer.activations(rollouts))
        return p > self.threshold, {"monitor/probe_mean": float(p.mean())}


def advantage_scorer(config, model, tokenizer, pairs):
    """Wu & Tang's score: `direction = "shortcut"` (as published: general-domain sentence pairs, last
    token, layers at 60–75 % depth, raw mean difference), or `"pairs"` (this project's variant: the
    run's hack/clean pairs, response-mean at one layer, unit direction)."""
    i, kwargs = config.intervention.advantage, config.model.chat_template_kwargs
    if i.direction == "shortcut":
        layers = layer_band(model.config.num_hidden_layers, *i.band)
        d = shortcut_direction(model, tokenizer, load_sentence_pairs(i.shortcut_pairs), layers)
        return LastTokenScorer(model, tokenizer, layers, d, kwargs)
    layer = default_layer(model) if i.layer is None else i.layer
    v, _ = extract_activation_direction(pairs, model, tokenizer, layer, chat_template_kwargs=kwargs)
    return ActivationScorer(model, tokenizer, layer, v[0], kwargs)


def make_shaper(config, arm, model, tokenizer, pairs) -> Shaper | None:
    """The reward shaper of a monitor / advantage-modification arm (None for every other arm)."""
    i, kwargs = config.intervention, config.model.chat_template_kwargs
    kind = arm.intervention
    if kind is None or kind in ("inoculation", "tdga"):
        return None
    if kind == "advantage_mod":
        a = i.advantage
        return AdvantageModification(advantage_scorer(config, model, tokenizer, pairs), a.alpha, a.form, a.sigma_floor)
    assert arm.monitor is not None, kind
    m = i.monitor
    strict = m.strict if m.strict is not None else arm.action == "penalty"  # the reference's defaults
    if arm.monitor == "gt":
        flagger = GroundTruthMonitor(strict, m.accuracy, config.seed)
    elif arm.monitor == "probe":
        probe = Probe.load(i.probe.path)
        scorer = ActivationScorer(model, tokenizer, probe.layer, probe.weight, kwargs)
        flagger = ProbeMonitor(probe, scorer, probe.threshold if i.probe.threshold is None else i.probe.threshold)
    else:
        flagger = JudgeMonitor(JudgeClient(**dataclasses.asdict(i.judge)))
    return MonitorPenalty(flagger, m.penalty) if arm.action == "penalty" else MonitorScreen(flagger)
