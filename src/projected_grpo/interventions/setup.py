"""Builds an arm's published intervention from its config: the reward shaper (monitors, advantage
modification) and, for TDGA, the trusted subspace from an honest warm-up."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from projected_grpo.directions.activation import default_layer, extract_activation_direction, response_means
from projected_grpo.directions.basis import Basis
from projected_grpo.interventions.concept import LastTokenScorer, layer_band, load_sentence_pairs, shortcut_direction
from projected_grpo.interventions.judge import JudgeClient, JudgeMonitor
from projected_grpo.interventions.probe import Probe
from projected_grpo.interventions.shaping import (
    AdvantageModification,
    GroundTruthMonitor,
    MonitorPenalty,
    MonitorScreen,
    Rollouts,
    Shaper,
)


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
    i, kwargs = config.intervention, config.model.chat_template_kwargs
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
        return AdvantageModification(advantage_scorer(config, model, tokenizer, pairs), i.alpha, i.form, i.sigma_floor)
    assert arm.monitor is not None, kind
    action = kind.split("_")[1]
    strict = i.strict if i.strict is not None else action == "penalty"  # the reference's defaults
    if arm.monitor == "gt":
        flagger = GroundTruthMonitor(strict, i.accuracy, config.seed)
    elif arm.monitor == "probe":
        probe = Probe.load(i.probe)
        scorer = ActivationScorer(model, tokenizer, probe.layer, probe.weight, kwargs)
        flagger = ProbeMonitor(probe, scorer, probe.threshold if i.probe_threshold is None else i.probe_threshold)
    else:
        flagger = JudgeMonitor(JudgeClient(i.judge_base_url, i.judge_model, i.judge_api_key_env, i.judge_concurrency,
                                           i.judge_timeout, i.judge_retries))
    return MonitorPenalty(flagger, i.penalty) if action == "penalty" else MonitorScreen(flagger)


def trusted_basis(config, run_dir: Path, log=print) -> Basis:
    """TDGA (Deng et al. 2026): a short honest warm-up (the rl_baseline arm: no loophole) from the same
    start; per module, the top-K right singular vectors of its stacked per-step updates (T × r)."""
    from transformers import TrainerCallback

    from projected_grpo.training.run import build_run

    warm = copy.deepcopy(config)
    warm.arm, warm.steps, warm.save_every = "rl_baseline", config.intervention.warmup_steps, 10 ** 9
    warm_dir = run_dir / "tdga_warmup"
    run = build_run(warm, warm_dir, progress_bar=False)
    snapshots: list[dict[str, Tensor]] = [{n: m.trainable.detach().flatten().clone() for n, m in run.adapters}]

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            snapshots.append({n: m.trainable.detach().flatten().clone() for n, m in run.adapters})

    run.trainer.add_callback(Snapshot())
    run.trainer.train()
    run.sandbox.close()
    vectors, spectra = {}, {}
    for name in snapshots[0]:
        updates = torch.stack([b[name] - a[name] for a, b in zip(snapshots, snapshots[1:])])  # T × r
        _, s, vh = torch.linalg.svd(updates.double(), full_matrices=False)
        vectors[name] = vh[: config.intervention.trusted_k].float()
        spectra[name] = s.float()
    log(f"TDGA: trusted subspace from {len(snapshots) - 1} honest warm-up steps, k = {config.intervention.trusted_k}")
    return Basis(vectors, spectra, {"kind": "trusted", "warmup_steps": len(snapshots) - 1,
                                    "k": config.intervention.trusted_k})
