"""Adapted Linear layers that are linear in their trainable parameters over frozen bases (method §1).

Every layer keeps the frozen base Linear and adds `ΔW`, linear in `trainable + quarantine`; both
start at zero, so the layer is bit-exactly the base at init and whenever the adapter is zeroed.
`trainable` is what the optimizer moves; `quarantine` (the route arm's `θ_hack`) is moved only by
the projecting optimizer and is zeroed at deployment.

The forward applies `W + ΔW` as one linear (fp32) rather than the factored `W x + U(c ⊙ Vh x)`:
building ΔW costs `o·m·i` once per call instead of `(o + i)·m` per token, a third of the
arithmetic on the organism's 14k-token batches; under no_grad (generation) ΔW is cached until a
parameter changes. In half precision `W + ΔW` would round small updates away, so ΔW gets its
own linear there.

Per-completion gradients for direction extraction come from one batched backward: with capture
on, a layer keeps its input and the gradient at its output, and since the parameters enter
linearly, each sample's gradient is an einsum over its own tokens — nothing is mixed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from einops import einsum
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from projected_grpo.atomic import atomic_path

READERS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")  # read the residual stream (d_in = d)
WRITERS = ("o_proj", "down_proj")  # write it (d_out = d)


def module_side(name: str, layer: nn.Module | Any, d: int) -> str | None:
    """'reader' (input is the residual stream), 'writer' (output is), or None. `layer`: anything with
    in_features / out_features (a linear layer, an adapted one, a PEFT LoRA view)."""
    suffix = name.split(".")[-1]
    if suffix in READERS or (suffix not in WRITERS and layer.in_features == d):
        return "reader"
    if suffix in WRITERS or layer.out_features == d:
        return "writer"
    return None


def default_cache_dir() -> Path:
    return Path(os.environ.get("PROJECTED_GRPO_CACHE", Path.home() / ".cache" / "projected_grpo"))


def weight_svd(weight: Tensor, cache_dir: Path | None) -> tuple[Tensor, Tensor, Tensor]:
    """fp32 SVD `W = U diag(S) Vh`, cached on disk by a hash of the weight's bytes."""
    w = weight.detach().to("cpu", torch.float32).contiguous()
    path = None
    if cache_dir is not None:
        key = hashlib.sha256(w.numpy().tobytes() + str(tuple(w.shape)).encode()).hexdigest()[:32]
        path = Path(cache_dir) / "svd" / f"{key}.safetensors"
        if path.is_file():
            f = load_file(path)
            return f["U"], f["S"], f["Vh"]
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"U": u.contiguous(), "S": s.contiguous(), "Vh": vh.contiguous()}, str(tmp))
    return u, s, vh


class AdaptedLinear(nn.Module):
    """Base class: `y = base(x) + delta(x)`; subclasses define the linear adapter term."""

    kind: str = ""
    trainable: nn.Parameter
    quarantine: nn.Parameter

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.capture = False
        self._input: Tensor | None = None
        self._out_grad: Tensor | None = None
        self._cached: tuple[tuple, Tensor] | None = None

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> Tensor:  # some model code reads `.weight` (dtype/device checks)
        return self.base.weight

    def features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def per_sample_grad(self) -> Float[Tensor, "b r"]:
        raise NotImplementedError

    def delta_weight(self, coeff: Tensor) -> Float[Tensor, "o i"]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        w = self.base.weight
        if w.dtype == torch.float32:
            y = nn.functional.linear(x, self._effective(lambda d: w + d), self.base.bias)
        else:
            y = self.base(x) + nn.functional.linear(x, self._effective(lambda d: d.to(x.dtype)))
        if self.capture:
            self._input = x.detach()
            if y.requires_grad:
                y.register_hook(self._keep_out_grad)
        return y

    def _effective(self, combine) -> Tensor:
        """`combine(ΔW)`; without autograd, cached until a parameter or buffer of this layer changes."""
        if torch.is_grad_enabled():
            return combine(self.delta_weight(self.trainable + self.quarantine))
        key = tuple(t._version for t in (*self.parameters(recurse=False), *self.buffers(recurse=False)))
        if self._cached is None or self._cached[0] != key:
            self._cached = key, combine(self.delta_weight(self.trainable + self.quarantine))
        return self._cached[1]

    def _keep_out_grad(self, grad: Tensor) -> None:
        self._out_grad = grad.detach()

    def clear_capture(self) -> None:
        self._input = self._out_grad = None

    @torch.no_grad()
    def merged(self, include_quarantine: bool = False) -> nn.Linear:
        """A plain Linear with the adapter folded into its weight."""
        coeff = self.trainable + (self.quarantine if include_quarantine else 0)
        out = nn.Linear(self.in_features, self.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device, dtype=self.base.weight.dtype)
        out.weight.copy_((self.base.weight.float() + self.delta_weight(coeff.float())).to(out.weight.dtype))
        if self.base.bias is not None:
            out.bias.copy_(self.base.bias)
        return out


class SVDKnobLinear(AdaptedLinear):
    """AntiPaSTO δS: `y = W x + U_m ((δS + δS_hack) ⊙ (Vh_m x))`, U and Vh frozen from an fp32 SVD of W.

    `∂L/∂δS_i = u_iᵀ G_W v_i`: δS-space is the Frobenius-orthonormal family `u_i v_iᵀ`.
    """

    kind = "svd"

    def __init__(self, base: nn.Linear, rank: int | None = None, cache_dir: Path | None = None):
        super().__init__(base)
        u, s, vh = weight_svd(base.weight, cache_dir)
        m = min(rank or s.numel(), s.numel())
        dtype, device = base.weight.dtype, base.weight.device
        self.register_buffer("U", u[:, :m].to(device, dtype).contiguous(), persistent=False)
        self.register_buffer("Vh", vh[:m].to(device, dtype).contiguous(), persistent=False)
        self.register_buffer("S", s[:m].to(device), persistent=False)
        self.trainable = nn.Parameter(torch.zeros(m, device=device))
        self.quarantine = nn.Parameter(torch.zeros(m, device=device), requires_grad=False)

    @property
    def rank(self) -> int:
        return self.trainable.numel()

    def features(self, x: Float[Tensor, "... i"]) -> Float[Tensor, "... m"]:
        return x @ self.Vh.T

    def per_sample_grad(self) -> Float[Tensor, "b m"]:
        g_z = self._out_grad.float() @ self.U.float()  # gradient at the knob's coordinates
        return einsum(g_z, self.features(self._input).float(), "b s m, b s m -> b m")

    def delta_weight(self, coeff: Float[Tensor, " m"]) -> Float[Tensor, "o i"]:
        return (self.U.float() * coeff) @ self.Vh.float()


class FixedALoRALinear(AdaptedLinear):
    """`ΔW = (B + B_hack) A`, A frozen random semi-orthonormal (ρ × d_in), B zero-init: linear in B."""

    kind = "fixed_a_lora"

    def __init__(self, base: nn.Linear, rank: int, seed: int):
        super().__init__(base)
        gen = torch.Generator().manual_seed(seed)
        rho = min(rank, base.in_features)
        q, _ = torch.linalg.qr(torch.randn(base.in_features, rho, generator=gen))
        dtype, device = base.weight.dtype, base.weight.device
        self.register_buffer("A", q.T.contiguous().to(device, dtype))
        self.trainable = nn.Parameter(torch.zeros(base.out_features, rho, device=device))
        self.quarantine = nn.Parameter(torch.zeros(base.out_features, rho, device=device), requires_grad=False)

    @property
    def rank(self) -> int:
        return self.trainable.numel()

    def features(self, x: Float[Tensor, "... i"]) -> Float[Tensor, "... r"]:
        return x @ self.A.T

    def per_sample_grad(self) -> Float[Tensor, "b n"]:
        g = einsum(self._out_grad.float(), self.features(self._input).float(), "b s o, b s r -> b o r")
        return g.flatten(1)

    def delta_weight(self, coeff: Float[Tensor, "o r"]) -> Float[Tensor, "o i"]:
        return coeff @ self.A.float()
