"""The projection's pure math (method §3): one implementation over a stack of modules, with the
single-module form a thin wrapper.

Dimensions: m modules (of one width), k basis rows, r the module's flat trainable width. V (m k r) has
orthonormal, oriented rows: `c = V g > 0` means descending `g` moves hack-ward. For a gradient g the
hack-ward part is `relu(V g)`; for an update Δ (which already points downhill) it is `relu(−V Δ)`.
All functions are pure; they never modify their inputs.
"""

from __future__ import annotations

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

GATES = ("one_sided", "two_sided", "reverse")
EPS = 1e-12


def gate(c: Float[Tensor, "*m k"], kind: str) -> Float[Tensor, "*m k"]:
    """Coefficients to remove: one_sided relu(c) (default), two_sided c, reverse 2c."""
    if kind == "one_sided":
        return torch.relu(c)
    if kind == "two_sided":
        return c
    if kind == "reverse":
        return 2 * c
    raise ValueError(f"unknown gate {kind!r}; choose one of {', '.join(GATES)}")


def batched_project(
    v: Float[Tensor, "m k r"], x: Float[Tensor, "m r"], kind: str, overshoot: float, preserve_magnitude: bool,
    sign: float,
) -> tuple[Float[Tensor, "m r"], Float[Tensor, "m r"]]:
    """(x', removed) per module, `x' = x − α · sign · gate(V (sign x))ᵀ V`; `sign=+1` for gradients
    (hack-ward: V g > 0), `-1` for updates (V Δ < 0). `preserve_magnitude` rescales x' to ‖x‖."""
    c = einsum(v, sign * x, "m k r, m r -> m k")
    removed = sign * overshoot * einsum(gate(c, kind), v, "m k, m k r -> m r")
    out = x - removed
    if preserve_magnitude:
        out = out * (x.norm(dim=1, keepdim=True) / out.norm(dim=1, keepdim=True).clamp_min(EPS))
    return out, removed


def batched_hackward_fraction(v: Float[Tensor, "m k r"], g: Float[Tensor, "m r"], signed: bool = True
                              ) -> Float[Tensor, " m"]:
    """`cin`/`cout` per module: ‖relu(V g)‖ / ‖g‖ (relu before aggregating; zero-padded rows of V and a
    zero g contribute 0); `signed=False` measures ‖V g‖ / ‖g‖, the whole component, for bases whose
    rows carry no hack-ward sign (activation space)."""
    c = einsum(v, g, "m k r, m r -> m k")
    return (torch.relu(c) if signed else c).norm(dim=1) / g.norm(dim=1).clamp_min(EPS)


def basis_overlap(old: Float[Tensor, "k r"], new: Float[Tensor, "k r"]) -> Tensor:
    """‖V_old V_newᵀ‖²_F / k: 1 for the same subspace, ≈ k/r for unrelated random ones."""
    k = max(old.shape[0], 1)
    return (old @ new.T).pow(2).sum() / k


# --- one module: the batched math on a stack of one ------------------------------------------------


def project_gradient(
    v: Float[Tensor, "k r"], g: Float[Tensor, " r"], kind: str = "one_sided", overshoot: float = 1.0,
    preserve_magnitude: bool = False,
) -> tuple[Float[Tensor, " r"], Float[Tensor, " r"]]:
    """(g', removed) with `g' = g − α · gate(V g)ᵀ V`."""
    out, removed = batched_project(v[None], g[None], kind, overshoot, preserve_magnitude, sign=1.0)
    return out[0], removed[0]


def project_update(
    v: Float[Tensor, "k r"], delta: Float[Tensor, " r"], kind: str = "one_sided", overshoot: float = 1.0,
    preserve_magnitude: bool = False,
) -> tuple[Float[Tensor, " r"], Float[Tensor, " r"]]:
    """(Δ', removed) for an update: the hack-ward part of Δ is along −V, so the gate acts on −VΔ."""
    out, removed = batched_project(v[None], delta[None], kind, overshoot, preserve_magnitude, sign=-1.0)
    return out[0], removed[0]


def hackward_fraction(v: Float[Tensor, "k r"], g: Float[Tensor, " r"]) -> Tensor:
    """`cin` of one gradient: ‖relu(V g)‖ / ‖g‖."""
    return batched_hackward_fraction(v[None], g[None])[0]


def update_leak(v: Float[Tensor, "k r"], delta: Float[Tensor, " r"]) -> Tensor:
    """`leak` = ‖relu(−V Δ)‖ / ‖Δ‖: how much of the actual update moves hack-ward."""
    return hackward_fraction(v, -delta)
