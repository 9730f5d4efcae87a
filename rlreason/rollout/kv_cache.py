"""A KV cache for our decoding loop whose appends are amortised O(1).

transformers' `DynamicCache` appends each new token's keys and values with `torch.cat`, which copies the
whole cache every step: O(L²) bytes over an L-token completion. At long-CoT lengths that copying is
`aten::cat`, the largest self-time in the torch profile of the HF engine's decode (64 rows x 128 tokens of
the 1M-parameter long-CoT model, on a loaded machine). With nothing else running, generating 64
completions of up to 512 tokens takes 3.25 s instead of 3.54 s (medians of 3 alternating runs; rows that
finish leave the cache, which copies it either way). `GrowingLayer` keeps each layer's keys and values in a
buffer with spare room, doubled when full, and hands attention a view of the filled part, so a step copies
only the new token. The values attention sees are the same; only where they are stored differs.

`growing_cache(config)` is a `DynamicCache` whose layers are `GrowingLayer`s when every layer is a plain
full-attention `DynamicLayer`, else transformers' own (sliding-window and other layer types keep theirs).
"""
from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

MIN_ROOM = 64  # the first buffer holds at least this many positions


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys/values are views into buffers with spare room along the sequence axis."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.kbuf = self.vbuf = None
        self.length = 0

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, need: int) -> None:
        """New buffers with room for max(need, 2 x the old room, MIN_ROOM) positions, the filled part copied."""
        room = max(need, 2 * (self.kbuf.shape[-2] if self.kbuf is not None else 0), MIN_ROOM)
        kbuf = key_states.new_empty(*key_states.shape[:-2], room, key_states.shape[-1])
        vbuf = value_states.new_empty(*value_states.shape[:-2], room, value_states.shape[-1])
        if self.length:
            kbuf[..., : self.length, :] = self.kbuf[..., : self.length, :]
            vbuf[..., : self.length, :] = self.vbuf[..., : self.length, :]
        self.kbuf, self.vbuf = kbuf, vbuf

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        need = self.length + key_states.shape[-2]
        if self.kbuf is None or need > self.kbuf.shape[-2]:
            self._grow(key_states, value_states, need)
        self.kbuf[..., self.length : need, :] = key_states
        self.vbuf[..., self.length : need, :] = value_states
        self.length = need
        self.keys, self.values = self.kbuf[..., :need, :], self.vbuf[..., :need, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the rows `indices` (finished sequences leave the batch), spare room included."""
        if self.is_initialized and self.length:
            self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
            self.keys, self.values = self.kbuf[..., : self.length, :], self.vbuf[..., : self.length, :]

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("GrowingLayer is only used by the HF engine's decoding loop, which never crops")


def growing_cache(config) -> DynamicCache:
    """A DynamicCache for `config` with GrowingLayer layers where every layer is a plain DynamicLayer."""
    cache = DynamicCache(config=config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache
