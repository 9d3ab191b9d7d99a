"""Plain LoRA through PEFT (method §1.3): the reference's r = α = 32 on every target Linear.

`ΔW = B A` with both factors trained is bilinear, so a gradient-space basis drifts as A moves; only
the activation-space projection (§2.2) applies. Each module exposes the factor that projection acts
on as `trainable`: `lora_A` for readers of the residual stream (A is projected off û once, at
protection time, so `ΔW û = B A û = 0` exactly), `lora_B` for writers (`g − û(ûᵀ g)`). No
quarantine: the route arm needs an adapter linear in its parameters (svd or fixed_a_lora).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from projected_grpo.adapters.base import AdapterConfig, Adapters, set_module
from projected_grpo.adapters.layers import module_side

DEFAULT_RANK = 32  # Ariahw et al.: r = α = 32 on all linear layers


@dataclass(eq=False)
class LoRAView:
    """One PEFT LoRA layer as the projection sees it."""

    layer: nn.Module  # peft.tuners.lora.LoraLayer
    side: str  # reader | writer
    quarantine = None

    @property
    def A(self) -> nn.Parameter:
        return self.layer.lora_A["default"].weight  # r × d_in

    @property
    def B(self) -> nn.Parameter:
        return self.layer.lora_B["default"].weight  # d_out × r

    @property
    def trainable(self) -> nn.Parameter:
        return self.A if self.side == "reader" else self.B

    @property
    def base(self) -> nn.Linear:
        return self.layer.get_base_layer()

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    in_features = property(lambda self: self.base.in_features)
    out_features = property(lambda self: self.base.out_features)


class PeftLoRAAdapters(Adapters):
    """PEFT LoRA layers injected into the model in place, behind the `Adapters` interface."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules.values() for p in (m.A, m.B)]

    def quarantine_parameters(self) -> list[nn.Parameter]:
        return []

    def deploy(self) -> None:  # nothing is quarantined
        return None

    @torch.no_grad()
    def zero(self) -> None:
        for m in self.modules.values():
            m.B.zero_()  # ΔW = B A = 0: the base policy (A keeps its init)

    @contextlib.contextmanager
    def zeroed(self):
        """The base (reference) policy for the duration: PEFT's own adapter switch, nothing copied."""
        for m in self.modules.values():
            m.layer.enable_adapters(False)
        try:
            yield
        finally:
            for m in self.modules.values():
                m.layer.enable_adapters(True)

    def capture(self, on: bool) -> None:
        raise NotImplementedError("per-sample gradients need an adapter linear in its parameters (svd, fixed_a_lora)")

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{f}": getattr(m, f).detach().cpu().contiguous() for name, m in self.modules.items()
                for f in ("A", "B")}

    @torch.no_grad()
    def _load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, m in self.modules.items():
            m.A.copy_(tensors[f"{name}.A"])
            m.B.copy_(tensors[f"{name}.B"])

    @torch.no_grad()
    def merge(self, include_quarantine: bool = False) -> nn.Module:
        for name, m in list(self.modules.items()):
            m.layer.merge()
            set_module(self.model, name, m.layer.get_base_layer())
        self.modules.clear()
        return self.model


def attach_peft_lora(model: nn.Module, config: AdapterConfig, base_model_id: str = "") -> PeftLoRAAdapters:
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer
    from peft.tuners.tuners_utils import cast_adapter_dtype

    for p in model.parameters():
        p.requires_grad_(False)
    rank = config.rank or DEFAULT_RANK
    lora = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(config.targets), lora_dropout=0.0, bias="none")
    with torch.random.fork_rng(devices=[]):  # A's init is seeded and leaves the global stream untouched
        torch.manual_seed(config.seed)
        inject_adapter_in_model(lora, model)
    # A and B in fp32 whatever the model's dtype (as PeftModel does): bf16 factors would round small
    # AdamW updates away and put rounding error back along û after every projected step
    cast_adapter_dtype(model, "default")
    d = model.config.get_text_config().hidden_size
    adapters = PeftLoRAAdapters(model, config, base_model_id=base_model_id)
    for name, layer in model.named_modules():
        if isinstance(layer, LoraLayer):
            side = module_side(name, layer.get_base_layer(), d)
            assert side is not None, f"{name}: neither reads nor writes the residual stream (d = {d})"
            adapters.modules[name] = LoRAView(layer, side)
    if not adapters.modules:
        raise ValueError(f"no Linear module matches the targets {config.targets}")
    for p in adapters.trainable_parameters():
        p.requires_grad_(True)
    return adapters
