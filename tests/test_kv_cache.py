"""rlreason.rollout.kv_cache: the growing cache gives the same keys, values and logits as transformers' DynamicCache."""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from rlreason.policy import REPO_ROOT
from rlreason.rollout.kv_cache import MIN_ROOM, GrowingLayer, growing_cache


def test_appends_match_concatenation_across_growth_and_row_selection():
    layer, ref = GrowingLayer(), []
    g = torch.Generator().manual_seed(0)
    k, v = torch.randn(3, 2, 5, 4, generator=g), torch.randn(3, 2, 5, 4, generator=g)
    keys, values = layer.update(k, v)
    ref = [k, v]
    assert layer.kbuf.shape[-2] == MIN_ROOM and torch.equal(keys, k)
    for step in range(MIN_ROOM + 10):  # past the first buffer: it doubles and keeps what it held
        k, v = torch.randn(3, 2, 1, 4, generator=g), torch.randn(3, 2, 1, 4, generator=g)
        keys, values = layer.update(k, v)
        ref = [torch.cat([ref[0], k], -2), torch.cat([ref[1], v], -2)]
        assert torch.equal(keys, ref[0]) and torch.equal(values, ref[1])
    assert layer.kbuf.shape[-2] == 2 * MIN_ROOM and layer.get_seq_length() == 5 + MIN_ROOM + 10
    keep = torch.tensor([0, 2])
    layer.batch_select_indices(keep)
    k, v = torch.randn(2, 2, 1, 4, generator=g), torch.randn(2, 2, 1, 4, generator=g)
    keys, values = layer.update(k, v)
    assert torch.equal(keys, torch.cat([ref[0][keep], k], -2)) and torch.equal(values, torch.cat([ref[1][keep], v], -2))


def test_decoding_with_it_gives_dynamic_cache_logits():
    model = AutoModelForCausalLM.from_pretrained(REPO_ROOT / "models" / "tiny-longcot").eval()
    ids = torch.randint(3, 40, (4, 9), generator=torch.Generator().manual_seed(1))
    ours, theirs = growing_cache(model.config), DynamicCache(config=model.config)
    assert all(isinstance(layer, GrowingLayer) for layer in ours.layers)
    with torch.no_grad():
        a = model(input_ids=ids, past_key_values=ours, use_cache=True).logits
        b = model(input_ids=ids, past_key_values=theirs, use_cache=True).logits
        for t in range(80):
            nxt = a[:, -1].argmax(-1, keepdim=True)
            a = model(input_ids=nxt, past_key_values=ours, use_cache=True).logits
            b = model(input_ids=nxt, past_key_values=theirs, use_cache=True).logits
            assert torch.equal(a, b)  # the same values in another layout: bit-identical logits
