"""TDGA (Deng et al. 2026): the trusted subspace of an honest warm-up.

Per module, the top-K right singular vectors of the stacked per-step updates (T × r) of a short honest
run from the same start; training keeps the update inside that subspace (`keep` mode). The warm-up run
itself is training's job (`training.run.honest_warmup`); this is the pure part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from projected_grpo.directions.basis import Basis


@dataclass
class TDGAConfig:
    """`[intervention.tdga]`: the tdga arm."""

    trusted_k: int = 4  # directions kept per module
    warmup_steps: int = 8  # honest (no-loophole) warm-up steps that define the trusted subspace


def trusted_basis(snapshots: list[dict[str, Float[Tensor, " _r"]]], k: int) -> Basis:
    """`snapshots`: each module's flattened trainable vector at the start and after every warm-up step."""
    assert len(snapshots) >= 2, "TDGA needs at least one warm-up step"
    vectors, spectra = {}, {}
    for name in snapshots[0]:
        updates = torch.stack([b[name] - a[name] for a, b in zip(snapshots, snapshots[1:])])  # T × r
        _, s, vh = torch.linalg.svd(updates.double(), full_matrices=False)
        vectors[name] = vh[:k].float()
        spectra[name] = s.float()
    return Basis(vectors, spectra, {"kind": "trusted", "warmup_steps": len(snapshots) - 1, "k": k})
