"""`model.source = "organism"` in a training config: build (or load) the organism and point the run at its files.

The organism layer sits above training, so callers (the CLI, the experiment runner) resolve a config
here before handing it to `training.run`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import fields

from loguru import logger

from projected_grpo.errors import ConfigError
from projected_grpo.organism.build import OrganismConfig, ensure_organism
from projected_grpo.training.config import TrainConfig


def resolve_organism(config: TrainConfig) -> TrainConfig:
    """`model.source = "organism"`: build (or load from the cache) the organism and point the model,
    the train / held-out problems and the pair sets at its files. Other configs pass through."""
    if config.model.source != "organism":
        return config
    known = {f.name for f in fields(OrganismConfig)}
    unknown = sorted(set(config.organism) - known)
    if unknown:
        raise ConfigError(f"organism.{unknown[0]}: unknown field. Fix: use one of {', '.join(sorted(known))}")
    try:
        organism_config = OrganismConfig(**config.organism)
    except ValueError as e:
        raise ConfigError(f"{e}. Fix: see docs/organism.md") from None
    organism, cached = ensure_organism(organism_config)
    logger.debug(f"model: the organism {organism.root} ({'from the cache' if cached else 'built now'})")
    out = copy.deepcopy(config)
    out.model.source = str(organism.model)
    out.data.path = out.data.path or str(organism.train)
    out.data.eval_path = out.data.eval_path or str(organism.eval)
    named = {"organism": str(organism.mechanism)}
    placebo = {"organism": str(organism.placebo), "leetcode_placebo": str(organism.placebo)}
    out.basis = dataclasses.replace(out.basis, pairs=named.get(out.basis.pairs, out.basis.pairs),
                                    placebo_pairs=placebo.get(out.basis.placebo_pairs, out.basis.placebo_pairs))
    return out
