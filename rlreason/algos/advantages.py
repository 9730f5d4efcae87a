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


@ADVANTAGES.register("dr_grpo")
def dr_grpo(rewards: torch.Tensor, group_size: int, cfg) -> torch.Tensor:
    """Dr. GRPO (arXiv 2503.20783): r - group mean, never divided by the group std.

    Dropping the std removes GRPO's question-difficulty bias. Example, one group
    r=[1,1,1,0]: mean 0.75 -> [0.25, 0.25, 0.25, -0.75].
    """
    r = group_view(rewards.float(), group_size)  # [P, G]
    return (r - r.mean(-1, keepdim=True)).reshape(-1)  # [N]


dr_grpo.needs_group = True


@ADVANTAGES.register("rloo")
def rloo(rewards: torch.Tensor, group_size: int, cfg) -> torch.Tensor:
    """RLOO (Ahmadian et al., arXiv 2402.14740): r_i - mean of the other G-1 rewards of its group.

    Equals G/(G-1) * (r_i - group mean); needs G >= 2 (ValueError otherwise).
    Example, one group r=[1,0,0,1]: 1 - (0+0+1)/3 = 2/3, 0 - (1+0+1)/3 = -2/3 -> [2/3, -2/3, -2/3, 2/3].
    """
    if group_size < 2:
        raise ValueError(f"rloo needs group_size >= 2 (got {group_size})")
    r = group_view(rewards.float(), group_size)  # [P, G]
    others = (r.sum(-1, keepdim=True) - r) / (group_size - 1)  # [P, G] leave-one-out baseline
    return (r - others).reshape(-1)  # [N]


rloo.needs_group = True


@ADVANTAGES.register("reinforce")
def reinforce(rewards: torch.Tensor, group_size: int, cfg) -> torch.Tensor:
    """REINFORCE without a baseline (Williams 1992): A = r.

    Example: r=[1,0,0,1] -> [1,0,0,1].
    """
    return rewards.float().clone()  # [N]


@ADVANTAGES.register("reinforce_batch")
def reinforce_batch(rewards: torch.Tensor, group_size: int, cfg) -> torch.Tensor:
    """REINFORCE with a batch-mean baseline (Williams 1992): A = r - mean over the whole batch.

    Example: r=[1,0,0,1,1,1,1,0]: mean 0.625 -> [0.375, -0.625, -0.625, 0.375, 0.375, 0.375, 0.375, -0.625].
    """
    r = rewards.float()
    return r - r.mean()  # [N]


def _whiten(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(x - mean) / (population std + eps) over the whole batch."""
    return (x - x.mean()) / (x.std(unbiased=False) + eps)


@ADVANTAGES.register("reinforce_pp")
def reinforce_pp(rewards: torch.Tensor, group_size: int, cfg) -> torch.Tensor:
    """REINFORCE++ (arXiv 2501.03262): batch whitening (r - batch mean) / (batch population std + adv_eps).

    Example: r=[1,0,0,1,1,1,1,0]: mean 0.625, std sqrt(0.625*0.375)=0.48412
    -> 0.375/0.48412 = 0.7746 for r=1, -0.625/0.48412 = -1.2910 for r=0.
    """
    return _whiten(rewards.float(), cfg.adv_eps)  # [N]


@ADVANTAGES.register("reinforce_pp_baseline")
def reinforce_pp_baseline(rewards: torch.Tensor, group_size: int, cfg) -> torch.Tensor:
    """REINFORCE++-baseline (arXiv 2501.03262): subtract the group mean, then whiten over the whole batch.

    Example: r=[1,0,0,1 | 1,1,1,0]: centred [.5,-.5,-.5,.5 | .25,.25,.25,-.75] (mean 0),
    batch population std sqrt(1.75/8)=0.46771 -> [1.0690, -1.0690, ... | 0.5345 x3, -1.6036].
    """
    r = group_view(rewards.float(), group_size)  # [P, G]
    centred = (r - r.mean(-1, keepdim=True)).reshape(-1)  # [N]
    return _whiten(centred, cfg.adv_eps)  # [N]


reinforce_pp_baseline.needs_group = True


@ADVANTAGES.register("rft")
def rft(rewards: torch.Tensor, group_size: int, cfg) -> torch.Tensor:
    """Online rejection-sampling fine-tuning (DeepSeekMath, arXiv 2402.03300 §5.2): A = 1 if r > 0 else 0.

    Correct samples (r > 0) get coefficient 1, the rest are dropped.
    Example: r=[1, 0, -1, 0.5] -> [1, 0, 0, 1].
    """
    return (rewards > 0).float()  # [N]
