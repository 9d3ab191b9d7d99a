"""Gradient-space hack directions (method §2.1).

For each pair p and side s, `g_{p,s}` = ∂(completion-only mean NLL)/∂θ_m for every adapted module.
Per module `D_m = [g_{p,hack} − g_{p,clean}]_p` (n × r); fp32 SVD; keep the top-k right singular
vectors, orient each by majority vote (`(D_m v_i)_p > 0` for at least half the pairs; ties keep +),
so `c = V g > 0` means descending g moves hack-ward. Floors: per-module relative `S_i/S_0 < τ`
and a global floor dropping the lowest fraction of all kept `S_i`. Row p of D is the policy-gradient
loss gradient of a ±1-advantage pair.

Per-completion gradients come from batched forward/backward passes: the adapters are linear in
their parameters, so each sample's gradient is an einsum over its own tokens (layers.py).
"""

from __future__ import annotations

import contextlib
import random

import torch
from jaxtyping import Float
from torch import Tensor

from projected_grpo.adapters.attach import Adapters
from projected_grpo.directions.basis import Basis, random_basis
from projected_grpo.directions.config import CONTROLS, ExtractionConfig  # noqa: F401  (re-exported)
from projected_grpo.directions.pairs import Pair, pairset_hash
from projected_grpo.directions.tokens import completion_batch, completion_nll


@contextlib.contextmanager
def quarantine_ablated(adapters: Adapters):
    """Zero θ_hack for the duration (refresh under route extracts on the deployed policy)."""
    saved = [m.quarantine.detach().clone() for _, m in adapters]
    adapters.deploy()
    try:
        yield
    finally:
        with torch.no_grad():
            for (_, m), q in zip(adapters, saved):
                m.quarantine.copy_(q)


def per_completion_grads(
    model, adapters: Adapters, tokenizer, prompts: list, completions: list[str], batch_size: int = 8,
    chat_template_kwargs: dict | None = None,
) -> dict[str, Float[Tensor, "_n _r"]]:
    """∂(mean NLL over completion tokens)/∂θ_m for each completion separately, per module."""
    out: dict[str, list[Tensor]] = {name: [] for name, _ in adapters}
    params = adapters.trainable_parameters()
    stashed = [p.grad for p in params]  # a training gradient waiting for its step (refresh) survives
    for p in params:
        p.grad = None
    adapters.capture(True)
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(completions), batch_size):
            ids, attn, comp = completion_batch(tokenizer, prompts[i:i + batch_size], completions[i:i + batch_size],
                                               chat_template_kwargs)
            device = next(model.parameters()).device
            ids, attn, comp = ids.to(device), attn.to(device), comp.to(device)
            per_sample = completion_nll(model, ids, attn, comp)
            assert torch.isfinite(per_sample).all(), "non-finite completion NLL during extraction"
            per_sample.sum().backward()
            for name, m in adapters:
                out[name].append(m.per_sample_grad().cpu())
                m.clear_capture()
            for p in adapters.trainable_parameters():
                p.grad = None
    finally:
        adapters.capture(False)
        model.train(was_training)
        for p, g in zip(params, stashed):
            p.grad = g
    return {name: torch.cat(gs) for name, gs in out.items()}


def orient(d: Float[Tensor, "n r"], v: Float[Tensor, "k r"]) -> Float[Tensor, "k r"]:
    """Flip row i unless at least half the pairs have (D v_i)_p > 0 (majority vote; ties keep +)."""
    positive = (d @ v.T > 0).sum(0)
    flip = 2 * positive < d.shape[0]
    return torch.where(flip[:, None], -v, v)


def top_directions(d: Float[Tensor, "n r"], k: int, tau: float) -> tuple[Tensor, Tensor]:
    """(oriented rows kept after the relative floor, full singular spectrum of D)."""
    _, s, vh = torch.linalg.svd(d.float(), full_matrices=False)
    keep = min(k, vh.shape[0])
    if s[0] > 0:
        keep = min(keep, int((s / s[0] >= tau).sum()))
    else:
        keep = 0
    return orient(d.float(), vh[:keep]), s


def contrast_rows(pairs: list[Pair], control: str, seed: int) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Which completions form each row of D: (plus side, minus side) as (pair index, side)."""
    n = len(pairs)
    plus, minus = [(i, "hack") for i in range(n)], [(i, "clean") for i in range(n)]
    if control == "shuffled":  # hack and clean swapped on a random half of the pairs
        swap = set(random.Random(seed).sample(range(n), n // 2))
        plus = [(i, "clean" if i in swap else "hack") for i in range(n)]
        minus = [(i, "hack" if i in swap else "clean") for i in range(n)]
    elif control == "nonhack":  # clean vs clean: each pair's clean side against the next pair's
        assert n >= 2, "the nonhack control needs at least two pairs"
        plus, minus = [(i, "clean") for i in range(n)], [((i + 1) % n, "clean") for i in range(n)]
    return plus, minus


def extract_gradient_basis(
    pairs: list[Pair], model, adapters: Adapters, tokenizer, config: ExtractionConfig = ExtractionConfig(),
    chat_template_kwargs: dict | None = None, model_id: str = "",
) -> Basis:
    meta = {"space": "gradient", "k": config.k, "tau": config.tau, "global_floor": config.global_floor,
            "control": config.control, "seed": config.seed, "pairset_hash": pairset_hash(pairs),
            "n_pairs": len(pairs), "model": model_id, "adapter": adapters.config.kind,
            "modes": sorted({p.mode for p in pairs})}
    if config.control == "random":
        basis = random_basis({n: m.trainable.numel() for n, m in adapters}, config.k, config.seed)
        basis.meta |= meta
        return basis
    order = list(range(len(pairs)))
    random.Random(config.seed).shuffle(order)
    n_held = int(round(config.holdout * len(pairs)))
    held, train = [pairs[i] for i in order[:n_held]], [pairs[i] for i in order[n_held:]]
    grads = _pair_grads(train, model, adapters, tokenizer, config, chat_template_kwargs)
    plus, minus = contrast_rows(train, config.control, config.seed)
    vectors, spectra = {}, {}
    for name, g in grads.items():
        d = g[[_row(i, s, len(train)) for i, s in plus]] - g[[_row(i, s, len(train)) for i, s in minus]]
        vectors[name], spectra[name] = top_directions(d, config.k, config.tau)
    vectors = apply_global_floor(vectors, spectra, config.global_floor)
    meta["diagnostics"] = diagnostics(vectors, spectra, config.k)
    if held:
        held_grads = _pair_grads(held, model, adapters, tokenizer, config, chat_template_kwargs)
        meta["diagnostics"]["heldout_positive"] = heldout_positive(vectors, held_grads, len(held))
        meta["diagnostics"]["n_heldout"] = len(held)
    return Basis(vectors, spectra, meta)


def _row(i: int, side: str, n: int) -> int:
    return i if side == "hack" else n + i


def _pair_grads(pairs, model, adapters, tokenizer, config, chat_template_kwargs):
    """Gradients of every hack completion, then every clean one (rows 0..n-1, n..2n-1)."""
    prompts = [list(p.prompt) for p in pairs] * 2
    completions = [p.hack for p in pairs] + [p.clean for p in pairs]
    with quarantine_ablated(adapters):
        return per_completion_grads(model, adapters, tokenizer, prompts, completions, config.batch_size,
                                    chat_template_kwargs)


def apply_global_floor(vectors: dict[str, Tensor], spectra: dict[str, Tensor], fraction: float) -> dict[str, Tensor]:
    """Drop the rows whose singular value is in the lowest `fraction` pooled over all modules."""
    pooled = torch.cat([spectra[n][: v.shape[0]] for n, v in vectors.items()])
    if fraction <= 0 or pooled.numel() == 0:
        return vectors
    cut = torch.quantile(pooled, fraction)
    return {n: v[spectra[n][: v.shape[0]] >= cut] for n, v in vectors.items()}


def diagnostics(vectors: dict[str, Tensor], spectra: dict[str, Tensor], k: int) -> dict:
    energy = {n: float(s[:k].pow(2).sum() / s.pow(2).sum().clamp_min(1e-30)) for n, s in spectra.items()}
    kept = {n: int(v.shape[0]) for n, v in vectors.items()}
    return {
        "modules_total": len(vectors), "modules_with_directions": sum(x > 0 for x in kept.values()),
        "rows_kept": kept, "energy_top_k": energy,
        "mean_energy_top_k": sum(energy.values()) / max(len(energy), 1),
        "spectrum_head": {n: [round(float(x), 6) for x in s[:k]] for n, s in spectra.items()},
    }


def heldout_positive(vectors: dict[str, Tensor], grads: dict[str, Tensor], n: int) -> float:
    """Fraction of held-out pairs whose gradient difference projects positively on the first rows."""
    score = torch.zeros(n)
    for name, v in vectors.items():
        if v.shape[0]:
            d = grads[name][:n] - grads[name][n:]
            score += torch.sign(d @ v[0])  # one vote per module, whatever its gradient scale
    return float((score > 0).float().mean())


def make_refresh(pairs: list[Pair], model, adapters: Adapters, tokenizer, config: ExtractionConfig, k_use: int,
                 chat_template_kwargs: dict | None = None):
    """A `refresh` callable for `ProjectingOptimizer`: re-extract on the current adapter (θ_hack
    ablated), return the top `k_use` rows per module."""
    def refresh() -> dict[str, Tensor]:
        basis = extract_gradient_basis(pairs, model, adapters, tokenizer, config, chat_template_kwargs)
        return basis.top(k_use)

    return refresh
