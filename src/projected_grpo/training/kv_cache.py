"""A key/value cache that grows in place: transformers' `DynamicCache` with each full-attention layer
writing into a reserved buffer instead of `torch.cat`-ing its whole cache every token.

Why: on the organism a decode step's arithmetic is about a millisecond, while concatenation re-allocates and
re-copies every layer's keys and values at each of the 64 steps. The layer hands attention the same keys and
values (a view of the buffer), so the sampled tokens are the same token for token — tested on the CPU with
SDPA on tiny Qwen3, Qwen2 and Llama models (tests/test_kv_cache.py); `python benchmarks/kv_cache.py` measures the
gain side by side. Callers that know the final length reserve it once; otherwise the buffer doubles when full.
Paths that replace a layer's keys every step (beam reordering, assisted decoding's crop) stay correct but copy
into a fresh buffer each time."""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """`DynamicLayer` whose `keys` / `values` are views of a buffer with room to grow."""

    def __init__(self, capacity: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.capacity = capacity  # positions to reserve at the first write (0: twice what it holds)
        self._view: torch.Tensor | None = None  # the keys this layer last handed out

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, s = self.get_seq_length(), key_states.shape[-2]
        # first write, full, or `keys` replaced by the base class (crop, beam reorder, batch select, reset)
        if self._view is not self.keys or n + s > self._key_buffer.shape[-2]:
            first = self._view is None and self.capacity >= n + s
            self._reserve(key_states, value_states, n, self.capacity if first else 2 * (n + s))
        self._key_buffer[..., n:n + s, :] = key_states
        self._value_buffer[..., n:n + s, :] = value_states
        self.keys, self.values = self._key_buffer[..., :n + s, :], self._value_buffer[..., :n + s, :]
        self._view = self.keys
        return self.keys, self.values

    def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, n: int, capacity: int) -> None:
        self._key_buffer = key_states.new_empty((*key_states.shape[:-2], capacity, key_states.shape[-1]))
        self._value_buffer = value_states.new_empty((*value_states.shape[:-2], capacity, value_states.shape[-1]))
        if n:
            self._key_buffer[..., :n, :] = self.keys
            self._value_buffer[..., :n, :] = self.values

    def reset(self) -> None:
        super().reset()
        self._view = self._key_buffer = self._value_buffer = None


def growing_cache(model, capacity: int = 0) -> DynamicCache:
    """The cache `generate` would build for `model` (sliding-window layers and all), full-attention layers growing
    in place; `capacity`: the final length when known (prompt + new tokens), reserved at the first write."""
    cache = DynamicCache(config=model.config)
    cache.layers = [GrowingLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def growing_cache_kwargs(model, kwargs: dict) -> dict:
    """`{"cache": ...}` to add to a `generate(**kwargs)` call, or `{}` where the call brings a cache, turns caching
    off, asks for a cache implementation (in its arguments, its generation config or the model's), or the model
    cannot take a dynamic cache."""
    config = kwargs.get("generation_config") or model.generation_config
    chosen = [kwargs.get("cache_implementation"), config.cache_implementation, model.generation_config.cache_implementation]
    if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None or any(c is not None for c in chosen) \
            or kwargs.get("use_cache", config.use_cache) is False or not model._supports_default_dynamic_cache():
        return {}
    ids = kwargs.get("input_ids")
    new = kwargs.get("max_new_tokens") or config.max_new_tokens
    return {"cache": growing_cache(model, ids.shape[-1] + new if ids is not None and new else 0)}


def generate_with_growing_cache(model) -> None:
    """Make `model.generate` (as TRL's trainer calls it) bring a growing cache where `growing_cache_kwargs` allows."""
    original = model.generate

    def generate(*args, **kwargs):
        return original(*args, **kwargs, **growing_cache_kwargs(model, kwargs))

    model.generate = generate
