"""A hack basis: per-module oriented orthonormal rows V (k × r) + spectra + provenance; one file format
for real bases and every control (safetensors: `V/<module>`, `S/<module>`, JSON metadata)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from projected_grpo.atomic import atomic_path


@dataclass
class Basis:
    vectors: dict[str, Float[Tensor, "_k _r"]]  # per module: its own k and width
    spectra: dict[str, Float[Tensor, " _n"]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    v_hack: Float[Tensor, "u d"] | None = None  # activation space: the residual-stream direction(s)

    def top(self, k: int) -> dict[str, Tensor]:
        """The first k rows of each module's basis (extract k=12, use k=5 in the reference)."""
        return {name: v[:k] for name, v in self.vectors.items()}

    @property
    def n_modules(self) -> int:
        return sum(v.shape[0] > 0 for v in self.vectors.values())

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"V/{n}": v.contiguous().float() for n, v in self.vectors.items()}
        tensors |= {f"S/{n}": s.contiguous().float() for n, s in self.spectra.items()}
        if self.v_hack is not None:
            tensors["v_hack"] = self.v_hack.contiguous().float()
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "projected_grpo.basis/1", "meta": json.dumps(self.meta)})

    @classmethod
    def load(cls, path: str | Path) -> Basis:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != "projected_grpo.basis/1":
            raise ValueError(f"{path}: not a projected_grpo basis file")
        tensors = load_file(str(path))
        vectors = {k[2:]: v for k, v in tensors.items() if k.startswith("V/")}
        spectra = {k[2:]: v for k, v in tensors.items() if k.startswith("S/")}
        return cls(vectors, spectra, json.loads(meta["meta"]), tensors.get("v_hack"))


def random_basis(widths: dict[str, int], k: int, seed: int) -> Basis:
    """The `random` control: Haar-random orthonormal rows, k per module (QR of a Gaussian, sign-fixed)."""
    gen = torch.Generator().manual_seed(seed)
    vectors = {}
    for name, r in widths.items():
        kk = min(k, r)
        q, rr = torch.linalg.qr(torch.randn(r, kk, generator=gen))
        vectors[name] = (q * torch.sign(torch.diagonal(rr))).T.contiguous()
    return Basis(vectors, {}, {"control": "random", "k": k, "seed": seed})
