"""The advantage-estimator contract (`Estimator`, the `ADVANTAGES` registry) and the masked statistics the
estimators in `advantages.py` share. Estimators themselves live in `advantages.py`, which re-exports all of this.

Statistics helpers take an optional weight `w` (1.0 for a valid sample or token, 0.0 for an excluded one);
with `w=None` they run the plain torch reductions, so an unmasked call computes exactly what it always did.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from rlreason.registry import Registry

SCOPES = ("sample", "group", "batch")


@dataclass(frozen=True)
class Estimate:
    """What an estimator gives the update: advantages, and value targets where it has them."""

    advantages: torch.Tensor  # [N] per sequence, or [N, T] per token
    returns: Optional[torch.Tensor] = None  # [N, T] critic regression targets (estimators with a critic)


@dataclass(frozen=True)
class Estimator:
    """A registered advantage estimator: `fn` and its declared traits.

    Calling it gives the advantages (as the bare function does); `estimate` also gives the returns.
    `valid` [N] bool (None = all valid): see `advantages.py`'s module docstring. Here the contract is
    enforced for every estimator: an all-True mask is the same as None (bit-identical results); a group
    with fewer than `min_group_size` valid members is invalid as a whole; invalid rewards are replaced by 0
    (a NaN cannot spread), the function is called with the remaining mask (it excludes those rows from its
    statistics) and their advantages are set to exactly 0.
    """

    name: str
    fn: Callable
    scope: str = "sample"  # the rows one advantage depends on: sample | group | batch
    min_group_size: int = 1  # 2 for a group baseline
    needs_critic: bool = False  # values [N, T] from a value model are passed in; returns come back
    token_level: bool = False  # advantages [N, T] from statistics over response tokens: needs `mask` [N, T]

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"estimator '{self.name}': scope '{self.scope}' is not {' | '.join(SCOPES)}")
        object.__setattr__(self, "__doc__", self.fn.__doc__)  # `rlreason list` shows the function's doc

    def effective_valid(self, valid: Optional[torch.Tensor], n: int, group_size: int) -> Optional[torch.Tensor]:
        """`valid` as the function sees it: None when every row is valid, else [N] bool with the rows of groups
        that keep fewer than `min_group_size` valid members turned invalid too."""
        if valid is None:
            return None
        valid = valid.bool().reshape(-1)
        if valid.numel() != n:
            raise ValueError(f"estimator '{self.name}': valid has {valid.numel()} entries for {n} samples")
        if bool(valid.all()):
            return None
        if self.min_group_size > 1:
            enough = valid.view(-1, group_size).sum(-1, keepdim=True) >= self.min_group_size  # [P, 1]
            valid = (valid.view(-1, group_size) & enough).reshape(-1)
        return valid

    def estimate(self, rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None,
                 valid: Optional[torch.Tensor] = None) -> Estimate:
        valid = self.effective_valid(valid, rewards.shape[0], group_size)
        extra = {} if valid is None else {"valid": valid}  # one written without `valid` runs while all are valid
        if valid is not None:  # an invalid sample's reward (0, NaN, anything) cannot leak into a statistic
            rewards = torch.where(valid if rewards.dim() == 1 else valid[:, None], rewards.float(), 0.0)
        out = self.fn(rewards, group_size, cfg, values=values, mask=mask, **extra)
        est = Estimate(*out) if isinstance(out, tuple) else Estimate(out)
        if valid is None:
            return est
        keep = valid if est.advantages.dim() == 1 else valid[:, None]
        return Estimate(torch.where(keep, est.advantages, 0.0), est.returns)

    def __call__(self, rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None,
                 valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.estimate(rewards, group_size, cfg, values, mask, valid).advantages


ADVANTAGES: Registry[Estimator] = Registry("advantage estimator")


def estimator(name: str, scope: str = "sample", min_group_size: int = 1, needs_critic: bool = False,
              token_level: bool = False):
    """Register `fn` under `name` as an `Estimator` with these traits (the decorated name is the Estimator)."""

    def add(fn: Callable) -> Estimator:
        return ADVANTAGES.register(name)(Estimator(name, fn, scope, min_group_size, needs_critic, token_level))

    return add


# ----------------------------------------------------------------------------- shapes


def sequence_rewards(rewards: torch.Tensor) -> torch.Tensor:
    """[N] stays [N]; per-token rewards [N, T] are summed over tokens to [N] (float32)."""
    rewards = rewards.float()
    return rewards.sum(-1) if rewards.dim() == 2 else rewards


def group_view(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N] (or [N, T] token rewards, summed) -> [N/G, G]."""
    rewards = sequence_rewards(rewards)
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.view(-1, group_size)


def weights(valid: Optional[torch.Tensor], shape) -> Optional[torch.Tensor]:
    """[N] bool `valid` as float weights viewed to `shape` (e.g. [P, G]); None stays None."""
    return None if valid is None else valid.float().reshape(shape)


def token_level_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Place sequence rewards [N] on each sequence's last response token: [N, T]; [N, T] passes through."""
    if rewards.dim() == 2:
        return rewards.float() * mask
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(-1)  # [N] index of the last response token
    out = torch.zeros(mask.shape, device=mask.device)
    out[torch.arange(mask.shape[0]), last] = rewards.float() * (mask.sum(-1) > 0)
    return out  # [N, T]


# ----------------------------------------------------------------------------- masked statistics


def mean(x: torch.Tensor, w: Optional[torch.Tensor], dim=None) -> torch.Tensor:
    """Mean of x over `dim` (all elements when None; kept as size 1) counting only w > 0."""
    if w is None:
        return x.mean() if dim is None else x.mean(dim, keepdim=True)
    if dim is None:
        return (x * w).sum() / w.sum().clamp(min=1)
    return (x * w).sum(dim, keepdim=True) / w.sum(dim, keepdim=True).clamp(min=1)


def std(x: torch.Tensor, w: Optional[torch.Tensor], ddof: int, dim=None) -> torch.Tensor:
    """Standard deviation with `ddof` (0 population, 1 Bessel) over `dim`, counting only w > 0."""
    if w is None:
        return x.std(correction=ddof) if dim is None else x.std(dim, correction=ddof, keepdim=True)
    n = w.sum() if dim is None else w.sum(dim, keepdim=True)
    dev = (x - mean(x, w, dim)) ** 2 * w
    var = (dev.sum() if dim is None else dev.sum(dim, keepdim=True)) / (n - ddof).clamp(min=1)
    return var.sqrt()


def whiten(x: torch.Tensor, w: Optional[torch.Tensor], eps: float, ddof: int) -> torch.Tensor:
    """(x - mean) / (std + eps) over every element counted by `w` (all of them when None)."""
    return (x - mean(x, w)) / (std(x, w, ddof) + eps)


def all_equal(r: torch.Tensor, w: Optional[torch.Tensor]) -> torch.Tensor:
    """[P, 1] True for the groups whose (valid) rewards are all equal: they carry no signal."""
    if w is None:
        return r.amax(-1, keepdim=True) == r.amin(-1, keepdim=True)
    hi = torch.where(w > 0, r, float("-inf")).amax(-1, keepdim=True)
    lo = torch.where(w > 0, r, float("inf")).amin(-1, keepdim=True)
    return hi == lo


def centred(r: torch.Tensor, w: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[P, G] rewards minus their group mean (over valid members), exactly 0 for a group whose rewards are all equal.

    In float32 the mean of [1.1] * 8 is off by an ulp, and GRPO's division by (std + eps) would turn that
    into advantages of about +-0.1 for a group that carries no signal.
    """
    return torch.where(all_equal(r, w), 0.0, r - mean(r, w, -1))
