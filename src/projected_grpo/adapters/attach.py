"""Attach adapters to any Hugging Face causal LM, save/load only their tensors, deploy, merge."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from projected_grpo.adapters.layers import AdaptedLinear, FixedALoRALinear, SVDKnobLinear, default_cache_dir

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
KINDS = ("svd", "fixed_a_lora")


@dataclass(frozen=True)
class AdapterConfig:
    kind: str = "svd"  # "svd" (δS knob) or "fixed_a_lora"
    targets: tuple[str, ...] = DEFAULT_TARGETS  # Linear modules whose name ends with one of these
    rank: int | None = None  # svd: top-m (None = full rank); fixed_a_lora: ρ (required)
    seed: int = 0  # fixed_a_lora: seeds the frozen A of each module

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"adapter kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.kind == "fixed_a_lora" and not self.rank:
            raise ValueError("fixed_a_lora needs a rank ρ (e.g. rank = 32)")


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
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(self.state_tensors(), str(tmp), metadata=meta)
        tmp.replace(path)

    @torch.no_grad()
    def load(self, path: str | Path) -> None:
        meta = read_metadata(path)
        if meta["modules"] != list(self.modules):
            raise ValueError(f"{path}: adapters were saved for other modules ({len(meta['modules'])} vs "
                             f"{len(self.modules)}); attach with the same targets and model")
        tensors = load_file(str(path))
        for name, m in self.modules.items():
            m.trainable.copy_(tensors[f"{name}.trainable"])
            m.quarantine.copy_(tensors[f"{name}.quarantine"])
            if isinstance(m, FixedALoRALinear):
                m.A.copy_(tensors[f"{name}.A"])

    @torch.no_grad()
    def merge(self, include_quarantine: bool = False) -> nn.Module:
        """Fold the adapters into the base weights and put plain Linears back; returns the model."""
        for name, m in list(self.modules.items()):
            _set_module(self.model, name, m.merged(include_quarantine))
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


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def attach_adapters(model: nn.Module, config: AdapterConfig = AdapterConfig(), base_model_id: str = "",
                    cache_dir: Path | None = None) -> Adapters:
    """Replace every target Linear by an adapted one; freeze everything else."""
    for p in model.parameters():
        p.requires_grad_(False)
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] in config.targets]
    if not names:
        raise ValueError(f"no Linear module matches the targets {config.targets}")
    adapters = Adapters(model, config, base_model_id=base_model_id)
    for i, name in enumerate(names):
        base = model.get_submodule(name)
        if config.kind == "svd":
            layer = SVDKnobLinear(base, config.rank, cache_dir)
        else:
            layer = FixedALoRALinear(base, config.rank, seed=config.seed * 100_003 + i)
        _set_module(model, name, layer)
        adapters.modules[name] = layer
    return adapters
