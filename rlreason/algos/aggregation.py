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
