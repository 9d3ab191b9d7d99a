"""Bases on disk: extracted on a cache miss, reused on a hit (key = everything that determines them)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path

import torch

from projected_grpo.adapters.base import Adapters
from projected_grpo.adapters.layers import default_cache_dir
from projected_grpo.directions.activation import activation_basis, extract_activation_direction
from projected_grpo.directions.basis import Basis
from projected_grpo.directions.gradient import ExtractionConfig, extract_gradient_basis
from projected_grpo.directions.pairs import Pair, pairset_hash

SPACES = ("gradient", "activation")


def model_fingerprint(adapters: Adapters) -> str:
    """Hash of every frozen weight of the model (all bytes, not a prefix) and the adapter config:
    what the basis lives in. Trainable adapter tensors are excluded (zero, or seeded by the config).
    Remembered until a weight changes in place (tensor version counters), since hashing a 4B model
    takes seconds and a run asks twice (projection and held-out bases)."""
    frozen = [(name, p) for name, p in adapters.model.named_parameters() if not p.requires_grad]
    versions = tuple(p._version for _, p in frozen)
    memo = getattr(adapters, "_fingerprint", None)
    if memo is not None and memo[0] == versions:
        return memo[1]
    config = asdict(adapters.config)
    if adapters.config.kind == "svd":  # δS starts at zero: the seed (which draws LoRA's A) changes nothing, so
        config.pop("seed")             # a run's seeds share one basis
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, p in frozen:
        t = p.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy())
    adapters._fingerprint = (versions, h.hexdigest()[:16])
    return adapters._fingerprint[1]


def tokenizer_fingerprint(tokenizer, chat_template_kwargs: dict | None) -> str:
    """Hash of the tokenizer (vocabulary, merges, specials), its chat template and the template's kwargs:
    the same pairs tokenise differently if any of them changes (e.g. Qwen3's enable_thinking)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = json.dumps({"tokenizer": backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items()),
                       "specials": tokenizer.special_tokens_map, "template": tokenizer.chat_template,
                       "kwargs": chat_template_kwargs or {}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def basis_key(pairs: list[Pair], adapters: Adapters, tokenizer, space: str, config: ExtractionConfig, extra: dict,
              chat_template_kwargs: dict | None = None) -> str:
    blob = json.dumps({"pairs": pairset_hash(pairs), "model": model_fingerprint(adapters), "space": space,
                       "tokenizer": tokenizer_fingerprint(tokenizer, chat_template_kwargs),
                       "config": asdict(config), **extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def extraction_forwards(n_pairs: int, space: str, config: ExtractionConfig) -> int:
    """How many model forward passes extracting a basis from n_pairs takes (for a progress bar): gradient space
    runs every hack then every clean completion in batches, the kept pairs and the held-out check separately;
    activation space runs the hack and the clean completions in batches of 8; a random control runs none."""
    if config.control == "random":
        return 0
    if space == "activation":
        return 2 * math.ceil(n_pairs / 8)
    held = int(round(config.holdout * n_pairs))
    return math.ceil(2 * (n_pairs - held) / config.batch_size) + math.ceil(2 * held / config.batch_size)


def get_basis(
    pairs: list[Pair], model, adapters: Adapters, tokenizer, space: str = "gradient",
    config: ExtractionConfig = ExtractionConfig(), layer: int | None = None, method: str = "mean_diff",
    m: int | None = None, cache_dir: Path | None = None, model_id: str = "", chat_template_kwargs: dict | None = None,
) -> tuple[Basis, Path, bool]:
    """(basis, its file, whether it came from the cache)."""
    if space not in SPACES:
        raise ValueError(f"space {space!r}: choose gradient or activation")
    extra = {"layer": layer, "method": method, "m": m} if space == "activation" else {}
    key = basis_key(pairs, adapters, tokenizer, space, config, extra, chat_template_kwargs)
    path = Path(cache_dir or default_cache_dir()) / "bases" / f"{key}.safetensors"
    if path.is_file():
        return Basis.load(path), path, True
    if space == "gradient":
        basis = extract_gradient_basis(pairs, model, adapters, tokenizer, config, chat_template_kwargs, model_id)
    else:
        v, meta = extract_activation_direction(pairs, model, tokenizer, layer, method, control=config.control,
                                               seed=config.seed, chat_template_kwargs=chat_template_kwargs)
        basis = activation_basis(adapters, v[0], m, meta={**meta, "model": model_id, "adapter": adapters.config.kind})
        basis.meta["v_hack_norm"] = float(torch.linalg.vector_norm(v[0]))
    basis.meta["key"] = path.stem
    basis.save(path)
    return basis, path, False
