"""Pass@k training's analytic advantage (Chen et al., arXiv 2508.10751, "Pass@k Training for Adaptively
Balancing Exploration and Exploitation of Large Reasoning Models").

The objective rewards a k-subset of a group with its best reward (pass@k). Taking every k-subset of the n
samples of a group, normalising the subset rewards by their mean and (population) std, and giving each sample
the mean advantage of the subsets that hold it yields a closed form in n, the number of wrong samples n_neg
and k (the paper's analytic derivation; `tests/test_algos_objectives.py` checks it against that enumeration):

    mean  = 1 - C(n_neg, k) / C(n, k)        (the group's pass@k)
    std   = sqrt(mean * (1 - mean))
    A_pos = (1 - mean) / std
    A_neg = (1 - mean - C(n_neg - 1, k - 1) / C(n - 1, k - 1)) / std

With k = 1 this is GRPO on binary rewards. The std is the exact population std over every k-subset (there is
no sample-size correction to choose).
"""
from __future__ import annotations

import torch

from .advantages import estimator, group_view


def binom_ratio(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """C(a, k) / C(b, k) = prod_{i<k} (a - i) / (b - i), elementwise in float64, for b >= k (0 where a < k).

    Example: a=2, b=4, k=2 -> (2*1)/(4*3) = 1/6; k=0 -> 1.
    """
    out = torch.ones(a.shape, dtype=torch.float64)
    for i in range(k):
        out = out * (a.double() - i).clamp(min=0) / (b.double() - i).clamp(min=1)
    return out


@estimator("pass_at_k", scope="group", min_group_size=2)
def pass_at_k(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """Pass@k training (arXiv 2508.10751, analytic advantage): each sample's mean normalised pass@k advantage
    over the k-subsets of its group (k = cfg.pass_k, 1 <= k < G).

    A sample is correct when its sequence reward is > 0 (rewards need not be binary; per-token rewards are
    summed first). A_pos = (1 - m)/(s + adv_eps), A_neg = (1 - m - C(n_neg-1,k-1)/C(n-1,k-1))/(s + adv_eps)
    with m = 1 - C(n_neg,k)/C(n,k), s = sqrt(m(1-m)). `valid` [N] (bool, None = all) marks samples whose
    reward could be checked: the others get 0 and are left out of n and n_neg. A group whose valid samples
    are all right or all wrong, or with fewer than k+1 valid samples (no subset to compare), gives exactly 0.
    Example, G=4, k=2, r=[1,0,0,0]: m = 1 - C(3,2)/C(4,2) = 1/2, s = 1/2 -> A_pos = 1,
    A_neg = (1/2 - C(2,1)/C(3,1))/(1/2) = -1/3.
    """
    k = cfg.pass_k
    if not 1 <= k < group_size:
        raise ValueError(f"pass_at_k needs 1 <= pass_k < group_size (got pass_k={k}, group_size={group_size})")
    r = group_view(rewards, group_size)  # [P, G]
    ok = torch.ones_like(r, dtype=torch.bool) if valid is None else valid.view_as(r).bool()
    right = (r > 0) & ok
    n = ok.sum(-1, keepdim=True)  # [P, 1] valid samples
    n_neg = n - right.sum(-1, keepdim=True)  # [P, 1] valid wrong samples
    mean = 1 - binom_ratio(n_neg, n, k)  # [P, 1] group pass@k
    std = (mean * (1 - mean)).sqrt()
    a_pos = 1 - mean
    a_neg = 1 - mean - binom_ratio(n_neg - 1, n - 1, k - 1)
    adv = torch.where(right, a_pos, a_neg) / (std + cfg.adv_eps)  # [P, G]
    signal = (n > k) & (std > 0) & ok
    return torch.where(signal, adv, 0.0).float().reshape(-1)  # [N]
