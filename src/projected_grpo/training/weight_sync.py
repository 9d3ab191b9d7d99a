"""The weights TRL pushes to vLLM: the *training* policy, merged, under the base model's own names.

TRL 1.16's `VLLMGeneration.sync_weights` streams `_iter_named_params()` to the engine (colocate:
`model.load_weights([(name, tensor)])` one by one; server: `update_named_params(metadata, stream)`).
For a model that is not a `PeftModel` that stream is `model.named_parameters()` as they are — for our
adapted layers `...q_proj.base.weight`, `...q_proj.trainable`, `...q_proj.quarantine` (or PEFT's
in-place `...q_proj.base_layer.weight`, `...lora_A.default.weight`): names vLLM's model does not have,
with the adapter never folded in. Generation would crash or, worse, sample from the base policy while
the adapter trains (silently off-policy).

`merged_weights` yields instead, for every adapted module, `W + ΔW` under the module's own name
(`...q_proj.weight`, and its bias as is):
- SVD knob: `W + U diag(δS + δS_hack) Vh`; fixed-A LoRA: `W + (B + B_hack) A` — the quarantine (route
  arm's θ_hack) is part of the policy that generates during training, so it is included;
- PEFT LoRA (injected in place, so TRL's own PeftModel merge path never runs): `W + scaling · B A`.
Every other parameter passes through untouched, in `named_parameters()` order (tied weights once, as
TRL sends them). The merge is done in fp32, one module at a time, and cast to the weight's dtype.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from projected_grpo.adapters.base import Adapters
from projected_grpo.adapters.layers import AdaptedLinear


def _base_and_owner(module) -> tuple[nn.Linear, nn.Module]:
    """(the frozen base Linear, the module in the model tree that holds base + adapter parameters)."""
    if isinstance(module, AdaptedLinear):
        return module.base, module
    return module.base, module.layer  # peft_lora.LoRAView: a LoraLayer wrapping `base_layer`


@torch.no_grad()
def merged_weight(module) -> Tensor:
    """The adapted module's effective weight as the training forward uses it (adapter + quarantine)."""
    base, owner = _base_and_owner(module)
    w = base.weight
    if isinstance(module, AdaptedLinear):
        delta = module.delta_weight((module.trainable + module.quarantine).float())
    else:  # PEFT LoraLayer: scaling · B A (fan_in_fan_out handled by PEFT)
        delta = owner.get_delta_weight("default") if "default" in owner.active_adapters else torch.zeros_like(w)
    return (w.float() + delta.float()).to(w.dtype)


def merged_weights(model: nn.Module, adapters: Adapters, gather: Callable = lambda params: nullcontext(),
                   rename: Callable[[str], str] = lambda name: name) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) for the whole policy as a plain base model: adapted modules merged under their base
    names, everything else as it is. `gather` (e.g. DeepSpeed ZeRO-3's) materialises the parameters one
    module at a time; `rename` strips wrapper prefixes (TRL's `_fix_param_name_to_vllm`)."""
    base_role: dict[int, tuple[str, object]] = {}  # id(param) → ("weight" | "bias", adapted module)
    owned: set[int] = set()  # adapter parameters: never sent
    for module in adapters.modules.values():
        base, owner = _base_and_owner(module)
        owned.update(id(p) for p in owner.parameters())
        base_role[id(base.weight)] = ("weight", module)
        if base.bias is not None:
            base_role[id(base.bias)] = ("bias", module)
    for name, param in model.named_parameters():
        if id(param) not in owned:
            with gather([param]):
                yield rename(name), param.data
            continue
        if id(param) not in base_role:
            continue  # trainable / quarantine / lora_A / lora_B
        role, module = base_role[id(param)]
        # `<module>.<base child>.<leaf>` → `<module>.<leaf>`: the base model's own name
        prefix = name.rsplit(".", 2)[0]
        _, owner = _base_and_owner(module)
        with gather(list(owner.parameters())):
            yield rename(f"{prefix}.{role}"), merged_weight(module) if role == "weight" else param.data


def install_merged_sync(generation, adapters: Adapters) -> None:
    """Make TRL's vLLM weight sync (`VLLMGeneration.sync_weights`, colocate and server) send `merged_weights`.

    Called once after `GRPOTrainer.__init__` when `use_vllm`; everything else about the sync (sleep
    mode, server metadata, prefix-cache reset, ZeRO-3 gathering) stays TRL's."""
    if getattr(generation._dist, "is_fsdp", False):
        raise NotImplementedError("vLLM weight sync with FSDP is not supported for projected_grpo adapters: the merge "
                                  "needs each module's full weight. Use DDP or DeepSpeed ZeRO (≤ 3) instead")

    def _iter_named_params():
        yield from merged_weights(generation.model, adapters, gather=generation._dist.gather_params,
                                  rename=generation._fix_param_name_to_vllm)

    generation._iter_named_params = _iter_named_params
