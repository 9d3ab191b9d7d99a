"""Attach adapters of any kind to a Hugging Face causal LM (svd / fixed_a_lora here, peft_lora via PEFT)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from projected_grpo.adapters.base import DEFAULT_TARGETS, KINDS, AdapterConfig, Adapters, set_module, read_metadata
from projected_grpo.adapters.layers import FixedALoRALinear, SVDKnobLinear, default_cache_dir
from projected_grpo.adapters.peft_lora import attach_peft_lora

__all__ = ["DEFAULT_TARGETS", "KINDS", "AdapterConfig", "Adapters", "attach_adapters", "read_metadata"]


def attach_adapters(model: nn.Module, config: AdapterConfig = AdapterConfig(), base_model_id: str = "",
                    cache_dir: Path | None = None) -> Adapters:
    """Replace every target Linear by an adapted one; freeze everything else."""
    if config.kind == "peft_lora":
        return attach_peft_lora(model, config, base_model_id)
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
        set_module(model, name, layer)
        adapters.modules[name] = layer
    return adapters
