"""Loss aggregation: per-token losses -> one scalar, exact under micro-batching.

Each entry returns this micro-batch's share of the step's loss, computed with
normalisers taken once over the whole optimizer step (`BatchTotals`), so
summing the shares over any split into micro-batches gives the same value and
gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlreason.registry import Registry

LOSS_AGGS = Registry("loss aggregation")


@dataclass
class BatchTotals:
    """Normalisers over the whole optimizer step."""

    num_tokens: float  # loss-mask tokens in the step
    num_seqs: int  # sequences in the step
    norm_len: float = 1.0  # seq_sum_norm's constant divisor (e.g. the max response length)

    @staticmethod
    def of(mask: torch.Tensor, norm_len: float = 1.0) -> "BatchTotals":  # mask [N, T]
        return BatchTotals(num_tokens=float(mask.sum().clamp(min=1)), num_seqs=mask.shape[0], norm_len=float(norm_len))


@LOSS_AGGS.register("token_mean")
def token_mean(loss: torch.Tensor, mask: torch.Tensor, totals: BatchTotals) -> torch.Tensor:
    """Mean over all loss tokens of the step (DAPO, arXiv 2503.14476 §3.3): sum(loss*mask) / tokens in step.

    Example: losses [[1,2],[3,pad]] -> (1+2+3)/3 = 2, however the rows are split.
    """
    return (loss * mask).sum() / totals.num_tokens


def _seq_sums(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence masked token sums: [n, T] -> [n]."""
    return (loss * mask).sum(-1)


@LOSS_AGGS.register("seq_mean_token_mean")
def seq_mean_token_mean(loss: torch.Tensor, mask: torch.Tensor, totals: BatchTotals) -> torch.Tensor:
    """Mean over sequences of each sequence's token mean (original GRPO, arXiv 2402.03300 eq. 3).

    A sequence with no loss tokens contributes 0 (its length is clamped to 1).
    Example: losses [[1,2],[3,pad]] -> ((1+2)/2 + 3/1) / 2 seqs = 2.25.
    """
    lengths = mask.sum(-1).clamp(min=1)  # [n]
    return (_seq_sums(loss, mask) / lengths).sum() / totals.num_seqs


@LOSS_AGGS.register("seq_mean_token_sum")
def seq_mean_token_sum(loss: torch.Tensor, mask: torch.Tensor, totals: BatchTotals) -> torch.Tensor:
    """Mean over sequences of token sums (verl's seq-mean-token-sum; no length normaliser, cf. arXiv 2503.20783).

    Example: losses [[1,2],[3,pad]] -> ((1+2) + 3) / 2 seqs = 3.
    """
    return _seq_sums(loss, mask).sum() / totals.num_seqs


@LOSS_AGGS.register("seq_sum_norm")
def seq_sum_norm(loss: torch.Tensor, mask: torch.Tensor, totals: BatchTotals) -> torch.Tensor:
    """Dr. GRPO constant normaliser (arXiv 2503.20783): sum of token losses / (num_seqs * norm_len).

    norm_len is a constant (the max response length), so no length bias.
    Example: losses [[1,2],[3,pad]], norm_len 4 -> (1+2+3) / (2*4) = 0.75.
    """
    return (loss * mask).sum() / (totals.num_seqs * totals.norm_len)
