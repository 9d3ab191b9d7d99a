"""Linear probes on response-averaged activations (reference §6), as a monitor baseline.

Data: labelled rollouts of a run (its `rollouts.jsonl`: every rollout with its oracle labels) and
the prompts they answered. Activations: `hidden_states[layer]` of the *base* model (adapters zeroed),
averaged over the response tokens, as the reference trained them. Balance: every positive and as
many negatives. Split: seeded, stratified 60 / 20 / 20 into train / validation / test, all disjoint
(the reference took its "test" rows from its training rows). Threshold: the validation split's
negative-score quantile at the target false-positive rate; AUC, FPR and TPR are then measured on the
test split, which neither the weights nor the threshold saw. Two probes: logistic regression (L2,
C = 1, as sklearn's default) and mass-mean (unit mean difference, sigmoid of the dot product, no
bias, as the reference).
During training the probe scores the *current policy's* activations (reference §6.3).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

KINDS = ("logistic", "mass_mean")


@dataclass
class ProbeConfig:
    """`[intervention.probe]`: the probe arms (probe_penalty, probe_screening)."""

    path: str | None = None  # probe file (`projected-grpo probe train`); in an experiment: "vanilla"
    threshold: float | None = None  # default: the probe's own (target FPR on its validation split)


@dataclass
class Probe:
    kind: str
    layer: int
    weight: Float[Tensor, " d"]
    bias: float
    threshold: float
    metrics: dict

    def scores(self, acts: Float[Tensor, "n d"]) -> Float[Tensor, " n"]:
        return torch.sigmoid(acts.float() @ self.weight + self.bias)

    def save(self, path: str | Path) -> None:
        meta = {k: v for k, v in asdict(self).items() if k != "weight"}
        save_file({"weight": self.weight.contiguous()}, str(path), metadata={"probe": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> Probe:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["probe"])
        return cls(weight=load_file(str(path))["weight"], **meta)


def auc(pos: Tensor, neg: Tensor) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counted half."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())


def fit_logistic(x: Tensor, y: Tensor, c: float = 1.0) -> tuple[Tensor, float]:
    """min_w,b  C·Σ BCE(σ(xw + b), y) + ½‖w‖²  (sklearn's L2 objective), by L-BFGS."""
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    x, y = x.double(), y.double()
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = c * torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="sum") + 0.5 * w @ w
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().float(), float(b.detach())


def split_rows(labels: list[bool], seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Balanced (all positives, as many negatives), then per class a seeded 60 / 20 / 20 split into
    train / validation / test: disjoint, and each split holds both classes."""
    pos = [i for i, y in enumerate(labels) if y]
    neg = [i for i, y in enumerate(labels) if not y]
    if len(pos) < 4 or len(neg) < 4:
        raise ValueError(f"probe: {len(pos)} positive and {len(neg)} negative rollouts; need at least 4 of each")
    rng = random.Random(seed)
    neg = rng.sample(neg, min(len(neg), len(pos)))
    splits: tuple[list[int], list[int], list[int]] = ([], [], [])
    for rows in (pos, neg):
        rng.shuffle(rows)
        a, b = int(0.6 * len(rows)), int(0.8 * len(rows))
        for split, part in zip(splits, (rows[:a], rows[a:b], rows[b:])):
            split.extend(part)
    for split in splits:
        rng.shuffle(split)
    return splits


def train_probe(acts: Float[Tensor, "n d"], labels: list[bool], layer: int, kind: str = "logistic",
                target_fpr: float = 0.05, seed: int = 0) -> Probe:
    """Fit on train, threshold on validation (its negatives' 1 − target_fpr quantile), report on test."""
    assert kind in KINDS, f"probe kind {kind!r}: choose {', '.join(KINDS)}"
    train, val, test = split_rows(labels, seed)
    y = torch.tensor([float(v) for v in labels])
    x_train, y_train = acts[train].float(), y[train]
    if kind == "logistic":
        weight, bias = fit_logistic(x_train, y_train)
    else:
        diff = x_train[y_train == 1].mean(0) - x_train[y_train == 0].mean(0)
        weight, bias = diff / diff.norm().clamp_min(1e-12), 0.0
    probe = Probe(kind, layer, weight, bias, 0.5, {})
    s_val, y_val = probe.scores(acts[val]), y[val]
    probe.threshold = float(torch.quantile(s_val[y_val == 0], 1 - target_fpr))
    s_test, y_test = probe.scores(acts[test]), y[test]
    flagged, pos, neg = s_test > probe.threshold, y_test == 1, y_test == 0
    tp = int((flagged & pos).sum())
    probe.metrics = {
        "n_train": len(train), "n_val": len(val), "n_test": len(test), "test_positive": int(pos.sum()),
        "target_fpr": target_fpr, "val_fpr": float((s_val[y_val == 0] > probe.threshold).float().mean()),
        "auc": auc(s_test[pos], s_test[neg]), "fpr": float(flagged[neg].float().mean()),
        "tpr": tp / int(pos.sum()), "recall": tp / int(pos.sum()), "precision": tp / max(int(flagged.sum()), 1),
        "accuracy": float((flagged == pos).float().mean()),
    }
    return probe
