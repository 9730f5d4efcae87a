"""Pure torch functions for the per-token gradient coefficient, one registry per axis (DESIGN.md).

| registry        | signature                                                              |
|-----------------|------------------------------------------------------------------------|
| ADVANTAGES      | fn(rewards [N] or [N,T], group_size, cfg, values, mask, valid) -> advantages [N] or [N,T] |
| LOSSES          | fn(logp [n,T], old_logp [n,T], adv [n,T], mask [n,T], cfg) -> (loss [n,T], stats) |
| LOSS_AGGS       | fn(loss [n,T], mask [n,T], totals) -> scalar (sums over micro-batches to the step's value) |
| KL_ESTIMATORS   | fn(logp [n,T], ref_logp [n,T]) -> kl [n,T]                              |
| IS_MODES        | fn(log_ratio [n,T], mask [n,T], cap, min) -> ISWeights (weight [n,T], masked, capped) |

`cfg` is any object with the AlgoConfig attributes the entry reads.
"""
from .advantages import ADVANTAGES
from .aggregation import LOSS_AGGS, BatchTotals
from .kl import KL_ESTIMATORS
from .losses import LOSSES
from .offpolicy import IS_MODES
from . import passk  # noqa: F401  (registers the pass_at_k estimator into ADVANTAGES)

__all__ = ["ADVANTAGES", "LOSSES", "LOSS_AGGS", "KL_ESTIMATORS", "IS_MODES", "BatchTotals"]
