"""The projection's pure math (method §3), on one module's flat vector and its basis.

V (k × r) has orthonormal, oriented rows: `c = V g > 0` means descending `g` moves hack-ward.
For a gradient g the hack-ward part is `relu(V g)`; for an update Δ (which already points
downhill) it is `relu(−V Δ)`. All functions are pure; they never modify their inputs.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

GATES = ("one_sided", "two_sided", "reverse")
EPS = 1e-12


def gate(c: Float[Tensor, " k"], kind: str) -> Float[Tensor, " k"]:
    """Coefficients to remove: one_sided relu(c) (default), two_sided c, reverse 2c."""
    if kind == "one_sided":
        return torch.relu(c)
    if kind == "two_sided":
        return c
    if kind == "reverse":
        return 2 * c
    raise ValueError(f"unknown gate {kind!r}; choose one of {', '.join(GATES)}")


def removed_component(
    v: Float[Tensor, "k r"], g: Float[Tensor, " r"], kind: str = "one_sided", overshoot: float = 1.0
) -> Float[Tensor, " r"]:
    """`α · gate(V g)ᵀ V`: the part of a gradient g to take out (it lies in span(V))."""
    return overshoot * (gate(v @ g, kind) @ v)


def project_gradient(
    v: Float[Tensor, "k r"], g: Float[Tensor, " r"], kind: str = "one_sided", overshoot: float = 1.0,
    preserve_magnitude: bool = False,
) -> tuple[Float[Tensor, " r"], Float[Tensor, " r"]]:
    """(g', removed) with `g' = g − removed`, optionally rescaled to ‖g‖."""
    removed = removed_component(v, g, kind, overshoot)
    out = g - removed
    if preserve_magnitude:
        out = out * (g.norm() / out.norm().clamp_min(EPS))
    return out, removed


def project_update(
    v: Float[Tensor, "k r"], delta: Float[Tensor, " r"], kind: str = "one_sided", overshoot: float = 1.0,
    preserve_magnitude: bool = False,
) -> tuple[Float[Tensor, " r"], Float[Tensor, " r"]]:
    """(Δ', removed) for an update: the hack-ward part of Δ is along −V, so the gate acts on −VΔ."""
    removed = -removed_component(v, -delta, kind, overshoot)
    out = delta - removed
    if preserve_magnitude:
        out = out * (delta.norm() / out.norm().clamp_min(EPS))
    return out, removed


def hackward_fraction(v: Float[Tensor, "k r"], g: Float[Tensor, " r"]) -> Tensor:
    """`cin`/`cout` = ‖relu(V g)‖ / ‖g‖ (relu before aggregating; 0 for a zero vector)."""
    return torch.relu(v @ g).norm() / g.norm().clamp_min(EPS)


def update_leak(v: Float[Tensor, "k r"], delta: Float[Tensor, " r"]) -> Tensor:
    """`leak` = ‖relu(−V Δ)‖ / ‖Δ‖: how much of the actual update moves hack-ward."""
    return hackward_fraction(v, -delta)


def basis_overlap(old: Float[Tensor, "k r"], new: Float[Tensor, "k r"]) -> Tensor:
    """‖V_old V_newᵀ‖²_F / k: 1 for the same subspace, ≈ k/r for unrelated random ones."""
    k = max(old.shape[0], 1)
    return (old @ new.T).pow(2).sum() / k


# --- the same math over a stack of M modules of one width (the optimizer's fast path) -----------


def batched_hackward_fraction(v: Float[Tensor, "m k r"], g: Float[Tensor, "m r"], signed: bool = True
                              ) -> Float[Tensor, " m"]:
    """Per module ‖relu(V g)‖ / ‖g‖ (zero-padded rows of V contribute nothing); `signed=False` measures
    ‖V g‖ / ‖g‖, the whole component, for bases whose rows carry no hack-ward sign (activation space)."""
    c = torch.einsum("mkr,mr->mk", v, g)
    return (torch.relu(c) if signed else c).norm(dim=1) / g.norm(dim=1).clamp_min(EPS)


def batched_project(
    v: Float[Tensor, "m k r"], x: Float[Tensor, "m r"], kind: str, overshoot: float, preserve_magnitude: bool,
    sign: float,
) -> tuple[Float[Tensor, "m r"], Float[Tensor, "m r"]]:
    """(x', removed) per module; `sign=+1` for gradients (hack-ward: V g > 0), `-1` for updates (V Δ < 0)."""
    c = torch.einsum("mkr,mr->mk", v, sign * x)
    removed = sign * overshoot * torch.einsum("mk,mkr->mr", gate(c, kind), v)
    out = x - removed
    if preserve_magnitude:
        out = out * (x.norm(dim=1, keepdim=True) / out.norm(dim=1, keepdim=True).clamp_min(EPS))
    return out, removed
