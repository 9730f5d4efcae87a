"""Policy losses: per-token loss [n,T] whose gradient is -coefficient * grad log pi."""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from rlreason.registry import Registry

LOSSES = Registry("policy loss")


@LOSSES.register("ppo_clip")
def ppo_clip(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
             cfg) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """PPO clipped surrogate (arXiv 1707.06347): -min(rho*A, clip(rho, 1-clip_low, 1+clip_high)*A).

    rho = exp(logp - old_logp). clip_high > clip_low is DAPO's clip-higher.
    Example: A=1, rho=1.5, clip 0.2 -> -min(1.5, 1.2) = -1.2 (no gradient: clipped).
    Stats are sums over loss tokens (the trainer divides by the step's token count): clipfrac counts
    tokens where the clipped term is active; ratio_mean sums the ratios (a mean once divided).
    """
    ratio = torch.exp(logp - old_logp)  # [n, T]
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - cfg.clip_low, 1 + cfg.clip_high) * adv
    loss = -torch.minimum(unclipped, clipped)  # [n, T]
    with torch.no_grad():
        m = mask.bool()
        stats = {
            "policy/clipfrac": ((clipped < unclipped) & m).sum(),
            "policy/ratio_mean": (ratio * mask).sum(),
        }
    return loss, stats
