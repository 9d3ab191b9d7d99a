"""Activation-space hack directions (method §2.2).

`v_hack ∈ ℝ^d` at layer ℓ: the normalised mean over pairs of (response-mean hidden state of the
hack side − that of the clean side), or the top-k principal directions of the paired differences.
Each target Linear's top-m singular subspace turns it into a per-module direction:
readers of the residual stream (q, k, v, gate, up): `h = V_mᵀ v_hack`; writers (o, down):
`h = U_mᵀ v_hack`. For the δS knob, `ĥ = h/‖h‖` embedded in ℝ^r is that module's single row.
For a LoRA, `û = V_m ĥ` (readers, acting on A's input side) or `U_m ĥ` (writers, B's output side)
gives the projector `g − (g û)ûᵀ` / `g − û(ûᵀ g)`. Modules with ‖h‖ < ε are skipped (not fired).
These rows carry no hack-ward sign in parameter space, so the whole component is removed: the
activation space always projects with the two-sided gate (the config rejects any other).
"""

from __future__ import annotations

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from projected_grpo.adapters.base import Adapters
from projected_grpo.adapters.layers import FixedALoRALinear, SVDKnobLinear, module_side, weight_svd
from projected_grpo.adapters.peft_lora import LoRAView
from projected_grpo.directions.basis import Basis
from projected_grpo.directions.pairs import Pair, pairset_hash
from projected_grpo.directions.tokens import completion_batch


def default_layer(model) -> int:
    return round(0.65 * model.config.num_hidden_layers)


@torch.no_grad()
def response_means(model, tokenizer, prompts, completions, layer: int, batch_size: int = 8,
                   chat_template_kwargs: dict | None = None, progress=lambda done, total: None) -> Float[Tensor, "n d"]:
    """Mean hidden state `hidden_states[layer]` over each completion's tokens (`progress(done, total)` per batch)."""
    out = []
    device = next(model.parameters()).device
    for i in range(0, len(completions), batch_size):
        ids, attn, comp = completion_batch(tokenizer, prompts[i:i + batch_size], completions[i:i + batch_size],
                                           chat_template_kwargs)
        hidden = model(input_ids=ids.to(device), attention_mask=attn.to(device), output_hidden_states=True)
        h = hidden.hidden_states[layer].float()
        mask = comp.to(device).float()[..., None]
        out.append(((h * mask).sum(1) / mask.sum(1)).cpu())
        progress(min(i + batch_size, len(completions)), len(completions))
    return torch.cat(out)


def extract_activation_direction(
    pairs: list[Pair], model, tokenizer, layer: int | None = None, method: str = "mean_diff", k: int = 1,
    control: str = "none", seed: int = 0, chat_template_kwargs: dict | None = None,
) -> tuple[Float[Tensor, "k d"], dict]:
    """Unit hack direction(s) in the residual stream at `layer` (rows oriented hack-ward)."""
    layer = default_layer(model) if layer is None else layer
    d = model.config.hidden_size
    meta = {"space": "activation", "layer": layer, "method": method, "k": k, "control": control, "seed": seed,
            "pairset_hash": pairset_hash(pairs), "n_pairs": len(pairs)}
    if control == "random":
        v = torch.randn(k, d, generator=torch.Generator().manual_seed(seed))
        return torch.linalg.qr(v.T)[0].T, meta
    prompts = [list(p.prompt) for p in pairs]
    hack = response_means(model, tokenizer, prompts, [p.hack for p in pairs], layer, chat_template_kwargs=chat_template_kwargs)
    clean = response_means(model, tokenizer, prompts, [p.clean for p in pairs], layer, chat_template_kwargs=chat_template_kwargs)
    diffs = hack - clean
    if control == "shuffled":
        swap = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[: len(pairs) // 2]
        diffs[swap] *= -1
    elif control == "nonhack":
        diffs = clean - clean.roll(1, 0)
    if method == "mean_diff":
        v = diffs.mean(0, keepdim=True)
        return v / v.norm().clamp_min(1e-12), meta
    if method == "pca":
        _, _, vh = torch.linalg.svd(diffs, full_matrices=False)
        v = vh[:k]
        return torch.where(((diffs @ v.T) > 0).sum(0)[:, None] * 2 < len(pairs), -v, v), meta
    raise ValueError(f"activation method {method!r}: choose mean_diff or pca")


def weight_direction(weight: Tensor, side: str, v_hack: Float[Tensor, " d"], m: int | None
                     ) -> tuple[Float[Tensor, " m"], Float[Tensor, " d"]]:
    """(h, û) from one SVD of a plain weight: `h` = v_hack in W's top-m singular subspace (`V_mᵀ v` for
    readers, `U_mᵀ v` for writers) and `û` = ĥ mapped back to the residual stream (a unit vector)."""
    u, _, vh = weight_svd(weight, None)
    width = min(weight.shape)
    basis = vh[: min(m or width, width)] if side == "reader" else u[:, : min(m or width, width)].T
    h = basis @ v_hack.float().to(basis.device)
    return h, basis.T @ (h / h.norm())


def singular_direction(layer, side: str, v_hack: Float[Tensor, " d"], m: int) -> Float[Tensor, " m"]:
    """`h = V_mᵀ v` (reader) or `U_mᵀ v` (writer) in the top-m singular subspace of W."""
    if isinstance(layer, SVDKnobLinear):
        basis = layer.Vh[:m].float() if side == "reader" else layer.U[:, :m].T.float()
        return basis @ v_hack.float().to(basis.device)
    return weight_direction(layer.weight, side, v_hack, m)[0]


def activation_basis(adapters: Adapters, v_hack: Float[Tensor, " d"], m: int | None = None,
                     eps: float = 1e-3, meta: dict | None = None) -> Basis:
    """Per-module rows for the projecting optimizer: δS knob ĥ (one row); LoRA writers û ⊗ e_j over
    flattened B (o × ρ), i.e. `g − û(ûᵀ g)`; PEFT LoRA readers e_j ⊗ û over flattened A (r × d_in),
    i.e. `g − (g û)ûᵀ`. Fixed-A readers get none: their frozen A is projected once (`protect_readers`)."""
    d = v_hack.numel()
    vectors, fired = {}, 0
    for name, layer in adapters:
        side = module_side(name, layer, d)
        r = layer.trainable.numel()
        vectors[name] = torch.zeros(0, r)
        if side is None:
            continue
        if isinstance(layer, SVDKnobLinear):
            h, u_hat = singular_direction(layer, side, v_hack, min(m or layer.rank, layer.rank)), None
        else:
            h, u_hat = weight_direction(layer.weight, side, v_hack, m)
        if h.norm() < eps:
            continue
        fired += 1
        if isinstance(layer, SVDKnobLinear):
            row = torch.zeros(r)
            row[: h.numel()] = (h / h.norm()).cpu()
            vectors[name] = row[None]
        elif side == "writer":  # B: o × ρ
            rho = layer.trainable.shape[1]
            vectors[name] = einsum(u_hat.cpu(), torch.eye(rho), "o, j r -> j o r").reshape(rho, -1)
        elif isinstance(layer, LoRAView):  # PEFT reader, A: r × d_in
            rho = layer.trainable.shape[0]
            vectors[name] = einsum(torch.eye(rho), u_hat.cpu(), "j r, i -> j r i").reshape(rho, -1)
    return Basis(vectors, {}, {**(meta or {}), "m": m, "eps": eps, "modules_fired": fired,
                               "modules_total": len(vectors)}, v_hack=v_hack.detach().float().cpu()[None])


def protect_readers(adapters: Adapters, v_hack: Float[Tensor, " d"], m: int | None = None, eps: float = 1e-3) -> int:
    """LoRA readers (fixed-A, PEFT): project û out of A once, so `ΔW û = B A û = 0` exactly. Fixed-A's
    A is frozen, so it stays so; PEFT's A stays so because its updates are projected off û too. The
    modules `activation_basis` skips (‖h‖ < ε) are skipped here too."""
    changed = 0
    with torch.no_grad():
        for name, layer in adapters:
            if isinstance(layer, (FixedALoRALinear, LoRAView)) and module_side(name, layer, v_hack.numel()) == "reader":
                h, u_hat = weight_direction(layer.weight, "reader", v_hack, m)
                if h.norm() < eps:
                    continue
                a = layer.A.float()
                u_hat = u_hat.to(a.device)
                layer.A.copy_((a - einsum(a, u_hat, "r i, i -> r")[:, None] * u_hat[None]).to(layer.A.dtype))
                changed += 1
    return changed
