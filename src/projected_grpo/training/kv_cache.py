"""A key/value cache that grows in place: transformers' `DynamicCache` with each full-attention layer
writing into a reserved buffer (doubled when full) instead of `torch.cat`-ing its whole cache every token.

Why: on the organism a decode step's arithmetic is about a millisecond, while concatenation re-allocates and
re-copies every layer's keys and values at each of the 64 steps. The layer hands attention the same keys and
values (a view of the buffer), so the sampled tokens are the same token for token (tests/test_kv_cache.py);
`python benchmarks/kv_cache.py` measures the gain side by side."""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """`DynamicLayer` whose `keys` / `values` are views of a buffer with room to grow."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._view: torch.Tensor | None = None  # the keys this layer last handed out

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, s = self.get_seq_length(), key_states.shape[-2]
        # first write, full, or `keys` replaced by the base class (crop, beam reorder, batch select, reset)
        if self._view is not self.keys or n + s > self._key_buffer.shape[-2]:
            self._reserve(key_states, value_states, n, 2 * (n + s))
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


def growing_cache(model) -> DynamicCache:
    """The cache `generate` would build for `model` (sliding-window layers and all), full-attention layers growing in place."""
    cache = DynamicCache(config=model.config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def generate_with_growing_cache(model) -> None:
    """Make `model.generate` (as TRL's trainer calls it) bring a growing cache, unless the call brings a cache or
    asks for a cache implementation of its own."""
    original = model.generate

    def generate(*args, **kwargs):
        config = kwargs.get("generation_config") or model.generation_config
        brought = kwargs.get("cache", kwargs.get("past_key_values"))  # `past_key_values`: its deprecated name
        if brought is None and kwargs.get("use_cache", config.use_cache) is not False \
                and kwargs.get("cache_implementation", config.cache_implementation) is None:
            kwargs["cache"] = growing_cache(model)
        return original(*args, **kwargs)

    model.generate = generate
