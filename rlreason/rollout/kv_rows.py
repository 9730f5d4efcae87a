"""Per-row KV caches for partial rollouts (`HFEngine.extend`): within one step the weights do not change, so
a sample that left a round's batch at its token budget can continue in the next round from the keys and
values it had, instead of having its prompt and tokens so far prefilled again.

A row's cache covers its context but the last id (the next round feeds that id first); rows of different
lengths are joined left-padded, with an attention mask that hides the padding, as a prefill would be.
"""
from __future__ import annotations

from typing import List, Tuple

import torch

from .kv_cache import growing_cache

RowKV = List[Tuple[torch.Tensor, torch.Tensor]]  # per layer: (keys [H, n, D], values [H, n, D])


def row_kv(cache, j: int, n: int) -> RowKV:
    """Batch row j's last n cached positions (its real ones, left padding excluded), copied out per layer."""
    return [(layer.keys[j, :, -n:].clone(), layer.values[j, :, -n:].clone()) for layer in cache.layers]


def merged_cache(config, rows: List[RowKV]):
    """(one left-padded cache holding every row's keys and values, attention mask [B, W] with 1 on real positions)."""
    W = max(r[0][0].shape[1] for r in rows)
    k0 = rows[0][0][0]
    mask = torch.zeros(len(rows), W, dtype=torch.long, device=k0.device)
    for i, r in enumerate(rows):
        mask[i, W - r[0][0].shape[1]:] = 1
    cache = growing_cache(config)
    for layer in range(len(rows[0])):
        keys = k0.new_zeros(len(rows), k0.shape[0], W, k0.shape[2])
        values = keys.clone()
        for i, r in enumerate(rows):
            n = r[layer][0].shape[1]
            keys[i, :, W - n:], values[i, :, W - n:] = r[layer]
        cache.update(keys, values, layer)
    return cache, mask
