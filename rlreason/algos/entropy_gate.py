"""High-entropy minority tokens (Wang et al., arXiv 2506.01939, "Beyond the 80/20 Rule"): the policy gradient
only on the tokens whose entropy is at or above a quantile of the step's response-token entropies.

`algo.top_entropy_quantile` = q keeps the top q of them (the paper: 0.2); 1.0 is off. The threshold is the
(1 - q) quantile with torch.quantile's linear interpolation, as TRL's `get_high_entropy_mask`, but taken over
every loss token of the optimizer step (all micro-batches, all ranks) instead of TRL's one micro-batch, so the
gradient does not depend on the micro-batch split. The gate multiplies only the policy loss; the KL term, the
entropy bonus and the loss normaliser (all loss tokens of the step) are unchanged.
"""
from __future__ import annotations

from typing import Callable, List, Tuple

import torch


def linear_quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile(x, q) (linear interpolation) of a 1-D tensor, without torch.quantile's 2**24-element limit.

    Example: x=[3, 1, 2, 4], q=0.5 -> sorted [1, 2, 3, 4], rank 1.5 -> 2 + 0.5*(3 - 2) = 2.5.
    """
    s = x.sort().values
    rank = torch.tensor(q, dtype=s.dtype, device=s.device) * (s.numel() - 1)
    below = rank.floor().long()
    above = rank.ceil().long()
    return torch.lerp(s[below], s[above], rank - below)


def top_entropy_gates(ents: List[torch.Tensor], masks: List[torch.Tensor], q: float,
                      gather: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
                      ) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Per micro-batch [n, T] bool gates (loss token and entropy >= the step's (1-q) quantile), and the threshold.

    `ents`/`masks`: the step's micro-batches; `gather` pools a rank's 1-D entropies over ranks (identity alone).
    No loss token in the step gives all-False gates and threshold +inf.
    Example: one micro-batch, entropies [0.1, 0.5, 0.9, 0.3] all loss tokens, q=0.5: the 0.5 quantile of
    [0.1, 0.3, 0.5, 0.9] is 0.4 -> gates [F, T, T, F].
    """
    local = torch.cat([e.detach()[m.bool()].float().reshape(-1) for e, m in zip(ents, masks)])
    pooled = gather(local)
    if pooled.numel() == 0:
        return [torch.zeros_like(m, dtype=torch.bool) for m in masks], torch.tensor(float("inf"))
    threshold = linear_quantile(pooled, 1 - q).to(local.device)
    return [(e.detach().float() >= threshold) & m.bool() for e, m in zip(ents, masks)], threshold
