"""Advantage estimators: rewards -> advantages (completion i is in group i // G).

Each entry of `ADVANTAGES` is an `Estimator`: the function plus the traits the rest of the program reads
instead of the estimator's name (DESIGN.md): `scope` (which rows its statistics span: "sample", "group"
or "batch"; under torchrun a batch-scope estimator runs on the all-gathered batch), `min_group_size`
(2 for a group baseline) and `needs_critic` (the value model is loaded only for such an estimator).
Adding an estimator is one decorated function: `@estimator("name", scope="batch")`.

One signature: `fn(rewards, group_size, cfg, values=None, mask=None)`.
- `rewards` is [N] (one scalar per completion) or [N, T] per-token rewards (the trainer passes the
  latter when `algo.kl.where: reward` adds -kl.coef * KL at every response token; the scalar reward
  sits on the last response token). Sequence estimators reduce [N, T] to [N] by summing over tokens,
  so their reward is r - kl.coef * sum_t KL_t.
- `values` [N, T] (critic values, only for estimators with `needs_critic`) and `mask` [N, T]
  (response tokens) are passed by the trainer to every estimator; most ignore them.
- Returns [N] (one coefficient per sequence) or [N, T] (per token, e.g. gae), or the pair
  (advantages, returns [N, T]) when the estimator has value targets for a critic (gae).
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
    """

    name: str
    fn: Callable
    scope: str = "sample"  # the rows one advantage depends on: sample | group | batch
    min_group_size: int = 1  # 2 for a group baseline
    needs_critic: bool = False  # values [N, T] from a value model are passed in; returns come back

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"estimator '{self.name}': scope '{self.scope}' is not {' | '.join(SCOPES)}")
        object.__setattr__(self, "__doc__", self.fn.__doc__)  # `rlreason list` shows the function's doc

    def estimate(self, rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> Estimate:
        out = self.fn(rewards, group_size, cfg, values=values, mask=mask)
        return Estimate(*out) if isinstance(out, tuple) else Estimate(out)

    def __call__(self, rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
        return self.estimate(rewards, group_size, cfg, values, mask).advantages


ADVANTAGES: Registry[Estimator] = Registry("advantage estimator")


def estimator(name: str, scope: str = "sample", min_group_size: int = 1, needs_critic: bool = False):
    """Register `fn` under `name` as an `Estimator` with these traits (the decorated name is the Estimator)."""

    def add(fn: Callable) -> Estimator:
        return ADVANTAGES.register(name)(Estimator(name, fn, scope, min_group_size, needs_critic))

    return add


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


def _all_equal(r: torch.Tensor) -> torch.Tensor:
    """[P, 1] True for the groups whose rewards are all equal (they carry no signal)."""
    return (r.amax(-1, keepdim=True) == r.amin(-1, keepdim=True))


def centred(r: torch.Tensor) -> torch.Tensor:
    """[P, G] rewards minus their group mean, exactly 0 for a group whose rewards are all equal.

    In float32 the mean of [1.1] * 8 is off by an ulp, and GRPO's division by (std + eps) would turn that
    into advantages of about +-0.1 for a group that carries no signal.
    """
    return torch.where(_all_equal(r), 0.0, r - r.mean(-1, keepdim=True))


@estimator("grpo", scope="group", min_group_size=2)
def grpo(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
    """GRPO (DeepSeekMath, arXiv 2402.03300 §4.1.2): (r - group mean) / (group std + eps).

    std is the population std (ddof=0); `cfg.std_normalize=False` keeps only the
    mean-centring. Example, one group r=[1,0,0,1]: mean 0.5, std 0.5 -> [1,-1,-1,1].
    """
    r = group_view(rewards, group_size)  # [P, G]
    adv = centred(r)
    if cfg.std_normalize:
        adv = adv / (r.std(-1, unbiased=False, keepdim=True) + cfg.adv_eps)
    return adv.reshape(-1)  # [N]



@estimator("dr_grpo", scope="group", min_group_size=2)
def dr_grpo(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
    """Dr. GRPO (arXiv 2503.20783): r - group mean, never divided by the group std.

    Dropping the std removes GRPO's question-difficulty bias. Example, one group
    r=[1,1,1,0]: mean 0.75 -> [0.25, 0.25, 0.25, -0.75].
    """
    r = group_view(rewards, group_size)  # [P, G]
    return centred(r).reshape(-1)  # [N]



@estimator("rloo", scope="group", min_group_size=2)
def rloo(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
    """RLOO (Ahmadian et al., arXiv 2402.14740): r_i - mean of the other G-1 rewards of its group.

    Equals G/(G-1) * (r_i - group mean); needs G >= 2 (ValueError otherwise).
    Example, one group r=[1,0,0,1]: 1 - (0+0+1)/3 = 2/3, 0 - (1+0+1)/3 = -2/3 -> [2/3, -2/3, -2/3, 2/3].
    """
    if group_size < 2:
        raise ValueError(f"rloo needs group_size >= 2 (got {group_size})")
    r = group_view(rewards, group_size)  # [P, G]
    others = (r.sum(-1, keepdim=True) - r) / (group_size - 1)  # [P, G] leave-one-out baseline
    return torch.where(_all_equal(r), 0.0, r - others).reshape(-1)  # [N]



@estimator("reinforce")
def reinforce(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
    """REINFORCE without a baseline (Williams 1992): A = r.

    Example: r=[1,0,0,1] -> [1,0,0,1].
    """
    return sequence_rewards(rewards).clone()  # [N]


@estimator("reinforce_batch", scope="batch")
def reinforce_batch(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
    """REINFORCE with a batch-mean baseline (Williams 1992): A = r - mean over the whole batch.

    Example: r=[1,0,0,1,1,1,1,0]: mean 0.625 -> [0.375, -0.625, -0.625, 0.375, 0.375, 0.375, 0.375, -0.625].
    """
    r = sequence_rewards(rewards)
    return r - r.mean()  # [N]


def _whiten(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(x - mean) / (population std + eps) over the whole batch."""
    return (x - x.mean()) / (x.std(unbiased=False) + eps)


@estimator("reinforce_pp", scope="batch")
def reinforce_pp(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
    """REINFORCE++ (arXiv 2501.03262): batch whitening (r - batch mean) / (batch population std + adv_eps).

    Example: r=[1,0,0,1,1,1,1,0]: mean 0.625, std sqrt(0.625*0.375)=0.48412
    -> 0.375/0.48412 = 0.7746 for r=1, -0.625/0.48412 = -1.2910 for r=0.
    """
    return _whiten(sequence_rewards(rewards), cfg.adv_eps)  # [N]


@estimator("reinforce_pp_baseline", scope="batch", min_group_size=2)
def reinforce_pp_baseline(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
    """REINFORCE++-baseline (arXiv 2501.03262): subtract the group mean, then whiten over the whole batch.

    Example: r=[1,0,0,1 | 1,1,1,0]: centred [.5,-.5,-.5,.5 | .25,.25,.25,-.75] (mean 0),
    batch population std sqrt(1.75/8)=0.46771 -> [1.0690, -1.0690, ... | 0.5345 x3, -1.6036].
    """
    r = group_view(rewards, group_size)  # [P, G]
    centred = (r - r.mean(-1, keepdim=True)).reshape(-1)  # [N]
    return _whiten(centred, cfg.adv_eps)  # [N]



@estimator("rft")
def rft(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
    """Online rejection-sampling fine-tuning (DeepSeekMath, arXiv 2402.03300 §5.2): A = 1 if r > 0 else 0.

    Correct samples (r > 0) get coefficient 1, the rest are dropped.
    Example: r=[1, 0, -1, 0.5] -> [1, 0, 0, 1].
    """
    return (sequence_rewards(rewards) > 0).float()  # [N]


@estimator("win_rate", scope="group", min_group_size=2)
def win_rate(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
    """SPPO's preference term (arXiv 2405.00675 §4): P_i - 1/2, P_i = win rate of sample i against the
    other G-1 samples of its group, judged by the verifiable reward (a tie counts 1/2).

    The coefficient the `sppo` loss needs. Example, one group r=[1,0,0,1]:
    sample 0 beats both 0s and ties the other 1 -> P=(1+1+.5)/3=5/6 -> 1/3; a 0 sample -> (0+.5+0)/3-1/2 = -1/3.
    """
    if group_size < 2:
        raise ValueError(f"win_rate needs group_size >= 2 (got {group_size})")
    r = group_view(rewards, group_size)  # [P, G]
    diff = r[:, :, None] - r[:, None, :]  # [P, G, G] r_i - r_j
    score = (diff > 0).float() + 0.5 * (diff == 0).float()  # 1 win, 1/2 tie, 0 loss (the diagonal ties itself)
    wins = (score.sum(-1) - 0.5) / (group_size - 1)  # [P, G] without the self-tie
    return (wins - 0.5).reshape(-1)  # [N]



def token_level_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Place sequence rewards [N] on each sequence's last response token: [N, T]; [N, T] passes through."""
    if rewards.dim() == 2:
        return rewards.float() * mask
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(-1)  # [N] index of the last response token
    out = torch.zeros(mask.shape, device=mask.device)
    out[torch.arange(mask.shape[0]), last] = rewards.float() * (mask.sum(-1) > 0)
    return out  # [N, T]


def gae_returns(token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                lam: float):
    """Generalised advantage estimation (Schulman et al., arXiv 1506.02438) over response tokens.

    delta_t = r_t + gamma*V_{t+1} - V_t, A_t = delta_t + gamma*lam*A_{t+1}, with V and A = 0 after the
    last response token; returns (advantages [N, T], returns [N, T] = A + V), both 0 outside `mask`.
    Example, one response of 2 tokens, r=[0, 1], V=[.5, .8], gamma=1, lam=1:
    A_1 = 1 - .8 = .2; A_0 = 0 + .8 - .5 + .2 = .5; returns [1, 1].
    """
    N, T = mask.shape
    adv = torch.zeros(N, T, device=mask.device)
    next_v = torch.zeros(N, device=mask.device)
    next_a = torch.zeros(N, device=mask.device)
    for t in reversed(range(T)):  # a scan over T: each step is vectorised over the batch
        m = mask[:, t]
        delta = token_rewards[:, t] + gamma * next_v - values[:, t]
        a_t = (delta + gamma * lam * next_a) * m
        adv[:, t] = a_t
        next_v = torch.where(m > 0, values[:, t], torch.zeros_like(next_v))  # prompt/pad positions end the recursion
        next_a = a_t
    return adv, (adv + values) * mask


@estimator("gae", scope="batch", needs_critic=True)
def gae(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None) -> torch.Tensor:
    """PPO with a learned critic (Ouyang et al. 2022; GAE, arXiv 1506.02438): per-token GAE advantages,
    whitened over the step's response tokens (masked mean and population std + adv_eps).

    gamma = cfg.gamma, lambda = cfg.lam; the critic (algo.critic) is loaded only for this estimator, and
    the un-whitened GAE returns (A + V) come back as its regression targets. The whitening is a statistic
    over the whole step (scope "batch").
    Example (before whitening): see `gae_returns`; whitening [.5, .2] gives [1, -1].
    """
    if values is None or mask is None:
        raise ValueError("gae needs the critic's values [N, T] and the response mask [N, T]")
    adv, returns = gae_returns(token_level_rewards(rewards, mask), values, mask, cfg.gamma, cfg.lam)
    n = mask.sum().clamp(min=1)
    mean = (adv * mask).sum() / n
    std = (((adv - mean) ** 2 * mask).sum() / n).sqrt()
    return (adv - mean) / (std + cfg.adv_eps) * mask, returns  # [N, T] whitened advantages, [N, T] value targets

