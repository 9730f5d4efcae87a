"""rlreason.algos.aggregation: BatchTotals and each aggregation by hand, and their micro-batch invariance.

Every expected number below is a literal worked out by hand in the comment next to it;
the code under test is only ever called, never re-implemented.
"""
from __future__ import annotations

import pytest
import torch

from rlreason.algos import LOSS_AGGS, BatchTotals
from rlreason.algos.aggregation import seq_mean_token_mean, seq_mean_token_sum, seq_sum_norm, token_mean


NEW_AGGS = ["seq_mean_token_mean", "seq_mean_token_sum", "seq_sum_norm"]


def assert_split_invariant(agg, w0, mask, totals, splits):
    """Summing `agg` over row splits (with whole-step `totals`) gives the full value and gradients.

    The per-token loss is w**2. Returns the full-batch gradient of w for further hand checks.
    """
    w_full = w0.clone().requires_grad_(True)
    full = agg(w_full ** 2, mask, totals)
    full.backward()
    w_mb = w0.clone().requires_grad_(True)
    total = torch.zeros(())
    for idx in splits:
        idx = torch.tensor(idx)
        share = agg(w_mb[idx] ** 2, mask[idx], totals)
        share.backward()
        total = total + share.detach()
    torch.testing.assert_close(total, full.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(w_mb.grad, w_full.grad, atol=1e-7, rtol=1e-6)
    return w_full.grad


# ----------------------------------------------------------------------------- token_mean


def test_batch_totals_of():
    """num_tokens = loss-mask sum (at least 1), num_seqs = rows."""
    t = BatchTotals.of(torch.tensor([[1.0, 1, 0], [1, 0, 0]]))
    assert t.num_tokens == 3.0 and t.num_seqs == 2
    t0 = BatchTotals.of(torch.zeros(4, 3))
    assert t0.num_tokens == 1.0 and t0.num_seqs == 4  # clamped: an empty mask does not divide by 0


def test_token_mean_by_hand():
    """Masked tokens drop out; the mean is over the step's loss tokens."""
    loss = torch.tensor([[1.0, 2.0, 5.0], [3.0, 7.0, 9.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0]])
    # (1 + 2 + 3) / 3 = 2   (not the per-row mean (1.5+3)/2 = 2.25)
    assert float(token_mean(loss, mask, BatchTotals.of(mask))) == pytest.approx(2.0)
    # with a step total of 6 tokens: 6 / 6 = 1
    assert float(token_mean(loss, mask, BatchTotals(num_tokens=6.0, num_seqs=4))) == pytest.approx(1.0)
    # empty mask: 0 / 1 = 0, finite
    assert float(token_mean(loss, torch.zeros(2, 3), BatchTotals.of(torch.zeros(2, 3)))) == 0.0


@pytest.mark.parametrize("splits", [[[0, 1, 2, 3]], [[0], [1], [2], [3]], [[0, 2], [1, 3]], [[3], [0, 1, 2]]])
def test_token_mean_micro_batch_invariance(splits):
    """Sum of per-micro-batch token_mean with whole-step totals == full-batch value, and same gradients."""
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(4, 6, generator=g)
    mask = torch.tensor([[1.0, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]])
    totals = BatchTotals.of(mask)  # 13 tokens

    grad = assert_split_invariant(token_mean, w0, mask, totals, splits)
    # hand check of the gradient: d/dw (w^2 * m / 13) = 2 w m / 13
    torch.testing.assert_close(grad, 2 * w0 * mask / 13.0)


# ----------------------------------------------------------------------------- per-sequence aggregations


LOSS = torch.tensor([[1.0, 2.0, 5.0], [3.0, 7.0, 9.0]])
MASK = torch.tensor([[1.0, 1, 0], [1, 0, 0]])


def test_aggregations_by_hand():
    t = BatchTotals.of(MASK, norm_len=4)
    # seq means 1.5 and 3 -> (1.5 + 3)/2 = 2.25
    assert float(seq_mean_token_mean(LOSS, MASK, t)) == pytest.approx(2.25)
    # seq sums 3 and 3 -> 6/2 = 3
    assert float(seq_mean_token_sum(LOSS, MASK, t)) == pytest.approx(3.0)
    # 6 / (2 seqs * 4) = 0.75
    assert float(seq_sum_norm(LOSS, MASK, t)) == pytest.approx(0.75)
    # step totals of 4 sequences: 4.5/4, 6/4, 6/(4*4)
    t4 = BatchTotals(num_tokens=3.0, num_seqs=4, norm_len=4.0)
    assert float(seq_mean_token_mean(LOSS, MASK, t4)) == pytest.approx(1.125)
    assert float(seq_mean_token_sum(LOSS, MASK, t4)) == pytest.approx(1.5)
    assert float(seq_sum_norm(LOSS, MASK, t4)) == pytest.approx(0.375)


def test_seq_mean_token_mean_empty_sequence_contributes_zero():
    """Row 1 has no loss tokens: its length clamps to 1 and its mean is 0 -> (1.5 + 0)/2 = 0.75."""
    mask = torch.tensor([[1.0, 1, 0], [0, 0, 0]])
    out = seq_mean_token_mean(LOSS, mask, BatchTotals.of(mask))
    assert torch.isfinite(out) and float(out) == pytest.approx(0.75)


@pytest.mark.parametrize("name", NEW_AGGS)
@pytest.mark.parametrize("splits", [[[0, 1, 2, 3, 4]], [[0], [1], [2], [3], [4]], [[0, 2], [1, 3, 4]],
                                    [[4], [3, 0, 1, 2]]])
def test_aggregation_micro_batch_invariance(name, splits):
    """Sum of per-micro-batch shares with whole-step totals == full value, and the same gradients."""
    agg = LOSS_AGGS.get(name)
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(5, 6, generator=g)
    mask = torch.tensor([[1.0, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0],
                         [0, 0, 0, 0, 0, 0]])
    totals = BatchTotals.of(mask, norm_len=8)

    grad = assert_split_invariant(agg, w0, mask, totals, splits)
    # hand gradients of w^2 aggregated: lengths [6,2,4,1,0->1], 5 sequences, norm_len 8
    lengths = torch.tensor([[6.0], [2.0], [4.0], [1.0], [1.0]])
    hand = {
        "seq_mean_token_mean": 2 * w0 * mask / (lengths * 5),
        "seq_mean_token_sum": 2 * w0 * mask / 5,
        "seq_sum_norm": 2 * w0 * mask / (5 * 8),
    }[name]
    torch.testing.assert_close(grad, hand)
