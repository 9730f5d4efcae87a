"""Advantage estimators: sequence rewards [N] -> advantages [N] (completion i is in group i // G)."""
from __future__ import annotations

import torch

from rlreason.registry import Registry

ADVANTAGES = Registry("advantage estimator")


def group_view(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N] -> [N/G, G]."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.view(-1, group_size)


@ADVANTAGES.register("grpo")
def grpo(rewards: torch.Tensor, group_size: int, cfg) -> torch.Tensor:
    """GRPO (DeepSeekMath, arXiv 2402.03300 §4.1.2): (r - group mean) / (group std + eps).

    std is the population std (ddof=0); `cfg.std_normalize=False` keeps only the
    mean-centring. Example, one group r=[1,0,0,1]: mean 0.5, std 0.5 -> [1,-1,-1,1].
    """
    r = group_view(rewards.float(), group_size)  # [P, G]
    adv = r - r.mean(-1, keepdim=True)
    if cfg.std_normalize:
        adv = adv / (r.std(-1, unbiased=False, keepdim=True) + cfg.adv_eps)
    return adv.reshape(-1)  # [N]


grpo.needs_group = True
