"""A probe trained on a finished run's labelled rollouts: the run's config, its prompts and the base model
come together here (experiments sits above interventions and training)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from projected_grpo.directions.activation import default_layer, response_means
from projected_grpo.interventions.probe import Probe, train_probe
from projected_grpo.models import default_device, dtype_of, load_model
from projected_grpo.training.data import training_records
from projected_grpo.training.evaluate import load_run_config


def probe_from_run(run_dir: str | Path, layer: int | None = None, kind: str = "logistic", target_fpr: float = 0.05,
                   seed: int = 0, max_rollouts: int = 2000, progress=lambda done, total: None) -> Probe:
    """Train a probe on a finished run's labelled rollouts (its rollouts.jsonl, strict labels), with
    the base model's activations (adapters absent) on the prompts the run trained on."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    model, tokenizer = load_model(config.model.source, dtype=dtype_of(config.model.dtype), device=default_device())
    layer = default_layer(model) if layer is None else layer
    prompts = {r["id"]: r["prompt"] for r in training_records(config, tokenizer)}
    rows = [json.loads(x) for x in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    rows = random.Random(seed).sample(rows, min(len(rows), max_rollouts))
    acts = response_means(model, tokenizer, [prompts[r["id"]] for r in rows], [r["response"] for r in rows], layer,
                          batch_size=16, chat_template_kwargs=config.model.chat_template_kwargs, progress=progress)
    probe = train_probe(acts, [bool(r["is_reward_hack_strict"]) for r in rows], layer, kind, target_fpr, seed)
    probe.metrics["source_run"] = str(run_dir)
    return probe
