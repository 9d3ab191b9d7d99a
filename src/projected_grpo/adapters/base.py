"""The adapters of one model (any kind) behind one interface: iterate, save/load only their tensors,
zero (the reference policy), deploy (θ_hack = 0), merge."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from projected_grpo.adapters.config import DEFAULT_TARGETS, KINDS, AdapterConfig  # noqa: F401  (re-exported)
from projected_grpo.adapters.layers import AdaptedLinear, FixedALoRALinear
from projected_grpo.atomic import atomic_path


@dataclass
class Adapters:
    """The adapted modules of one model, by qualified module name (in model order)."""

    model: nn.Module
    config: AdapterConfig
    modules: dict[str, AdaptedLinear] = field(default_factory=dict)
    base_model_id: str = ""

    def __iter__(self) -> Iterator[tuple[str, AdaptedLinear]]:
        return iter(self.modules.items())

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [m.trainable for m in self.modules.values()]

    def quarantine_parameters(self) -> list[nn.Parameter]:
        return [m.quarantine for m in self.modules.values()]

    @torch.no_grad()
    def deploy(self) -> None:
        """Zero the quarantine (the route arm's θ_hack): the deployed policy."""
        for m in self.modules.values():
            m.quarantine.zero_()

    @torch.no_grad()
    def zero(self) -> None:
        """Zero everything: the model is the base (reference) policy again, bit-exactly."""
        for m in self.modules.values():
            m.trainable.zero_()
            m.quarantine.zero_()

    @contextlib.contextmanager
    def zeroed(self):
        """The reference policy for the duration (KL without a second model); restored after."""
        saved = [(m.trainable.detach().clone(), m.quarantine.detach().clone()) for m in self.modules.values()]
        self.zero()
        try:
            yield
        finally:
            with torch.no_grad():
                for m, (t, q) in zip(self.modules.values(), saved):
                    m.trainable.copy_(t)
                    m.quarantine.copy_(q)

    def capture(self, on: bool) -> None:
        for m in self.modules.values():
            m.capture = on
            if not on:
                m.clear_capture()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, m in self.modules.items():
            out[f"{name}.trainable"] = m.trainable.detach().cpu().contiguous()
            out[f"{name}.quarantine"] = m.quarantine.detach().cpu().contiguous()
            if isinstance(m, FixedALoRALinear):
                out[f"{name}.A"] = m.A.detach().cpu().contiguous()
        return out

    def save(self, path: str | Path) -> None:
        """Adapter tensors only (safetensors), with the base model id, targets and rank as metadata."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": "projected_grpo.adapters/1", "base_model": self.base_model_id,
                "config": json.dumps(asdict(self.config)), "modules": json.dumps(list(self.modules))}
        with atomic_path(path) as tmp:
            save_file(self.state_tensors(), str(tmp), metadata=meta)

    @torch.no_grad()
    def load(self, path: str | Path) -> None:
        meta = read_metadata(path)
        if meta["modules"] != list(self.modules):
            raise ValueError(f"{path}: adapters were saved for other modules ({len(meta['modules'])} vs "
                             f"{len(self.modules)}); attach with the same targets and model")
        self._load_tensors(load_file(str(path)))

    @torch.no_grad()
    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, m in self.modules.items():
            m.trainable.copy_(tensors[f"{name}.trainable"])
            m.quarantine.copy_(tensors[f"{name}.quarantine"])
            if isinstance(m, FixedALoRALinear):
                m.A.copy_(tensors[f"{name}.A"])

    @torch.no_grad()
    def merge(self, include_quarantine: bool = False) -> nn.Module:
        """Fold the adapters into the base weights and put plain Linears back; returns the model."""
        for name, m in list(self.modules.items()):
            set_module(self.model, name, m.merged(include_quarantine))
        self.modules.clear()
        return self.model


def read_metadata(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "projected_grpo.adapters/1":
        raise ValueError(f"{path}: not a projected_grpo adapter file")
    return {"base_model": meta["base_model"], "config": AdapterConfig(**_tuple_targets(json.loads(meta["config"]))),
            "modules": json.loads(meta["modules"])}


def _tuple_targets(d: dict) -> dict:
    return {**d, "targets": tuple(d["targets"])}


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
