"""Advantage estimators: rewards -> advantages (completion i is in group i // G).

Each entry of `ADVANTAGES` is an `Estimator` (rlreason/algos/estimator.py): the function plus the traits
the rest of the program reads instead of the estimator's name (DESIGN.md): `scope` (which rows its
statistics span: "sample", "group" or "batch"; under torchrun a batch-scope estimator runs on the
all-gathered batch), `min_group_size` (2 for a group baseline), `needs_critic` (the value model is loaded
only for such an estimator) and `token_level` (its statistics span response tokens, so it needs `mask`).
Adding an estimator is one decorated function: `@estimator("name", scope="batch")`.

One signature: `fn(rewards, group_size, cfg, values=None, mask=None, valid=None)`.
- `rewards` is [N] (one scalar per completion) or [N, T] per-token rewards (the trainer passes the
  latter when `algo.kl.where: reward` adds -kl.coef * KL at every response token; the scalar reward
  sits on the last response token). Sequence estimators reduce [N, T] to [N] by summing over tokens,
  so their reward is r - kl.coef * sum_t KL_t; token-level ones (reinforce_pp, gae) use the tokens.
- `values` [N, T] (critic values, only for estimators with `needs_critic`) and `mask` [N, T]
  (response tokens) are passed by the trainer to every estimator; most ignore them.
- `valid` [N] bool or None (= all valid): False for a sample whose reward could not be determined (a
  check that errored or timed out). Such a sample gets advantage exactly 0 (all its tokens) and is left
  out of every statistic: group mean and std, leave-one-out baselines, win-rate comparisons, batch means
  and whitening. A group left with fewer than `min_group_size` valid members gives 0 to all of its
  members. `Estimator.estimate` enforces the zeros and the group rule; an all-True mask is the same as None.
- `cfg.std_ddof` (0 or 1) is the ddof of every standard deviation an estimator divides by.
- Returns [N] (one coefficient per sequence) or [N, T] (per token, e.g. gae), or the pair
  (advantages, returns [N, T]) when the estimator has value targets for a critic (gae).
"""
from __future__ import annotations

from typing import Optional

import torch

from rlreason.algos.estimator import (ADVANTAGES, SCOPES, Estimate, Estimator, all_equal, centred,  # noqa: F401
                                      estimator, group_view, mean, sequence_rewards, std, token_level_rewards,
                                      weights, whiten)


@estimator("grpo", scope="group", min_group_size=2)
def grpo(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """GRPO (DeepSeekMath, arXiv 2402.03300 §4.1.2): (r - group mean) / (group std + eps).

    The std's ddof is `cfg.std_ddof` (default 1, Bessel's, as TRL and verl); `cfg.std_normalize=False`
    keeps only the mean-centring. Example, one group r=[1,0,0,1]: mean 0.5, centred [.5,-.5,-.5,.5];
    ddof 1: std sqrt(1/3)=0.57735 -> [0.8660, -0.8660, -0.8660, 0.8660]; ddof 0: std 0.5 -> [1,-1,-1,1].
    """
    r = group_view(rewards, group_size)  # [P, G]
    w = weights(valid, r.shape)
    adv = centred(r, w)
    if cfg.std_normalize:
        adv = adv / (std(r, w, cfg.std_ddof, dim=-1) + cfg.adv_eps)
    return adv.reshape(-1)  # [N]


@estimator("dr_grpo", scope="group", min_group_size=2)
def dr_grpo(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """Dr. GRPO (arXiv 2503.20783): r - group mean, never divided by the group std.

    Dropping the std removes GRPO's question-difficulty bias. Example, one group
    r=[1,1,1,0]: mean 0.75 -> [0.25, 0.25, 0.25, -0.75].
    """
    r = group_view(rewards, group_size)  # [P, G]
    return centred(r, weights(valid, r.shape)).reshape(-1)  # [N]


@estimator("rloo", scope="group", min_group_size=2)
def rloo(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """RLOO (Ahmadian et al., arXiv 2402.14740): r_i - mean of the other G-1 rewards of its group.

    Equals G/(G-1) * (r_i - group mean); needs G >= 2 (ValueError otherwise). With invalid samples, the
    others are the other valid members. Example, one group r=[1,0,0,1]:
    1 - (0+0+1)/3 = 2/3, 0 - (1+0+1)/3 = -2/3 -> [2/3, -2/3, -2/3, 2/3].
    """
    if group_size < 2:
        raise ValueError(f"rloo needs group_size >= 2 (got {group_size})")
    r = group_view(rewards, group_size)  # [P, G]
    w = weights(valid, r.shape)
    if w is None:
        others = (r.sum(-1, keepdim=True) - r) / (group_size - 1)  # [P, G] leave-one-out baseline
    else:
        others = ((r * w).sum(-1, keepdim=True) - r) / (w.sum(-1, keepdim=True) - 1).clamp(min=1)
    return torch.where(all_equal(r, w), 0.0, r - others).reshape(-1)  # [N]


@estimator("reinforce")
def reinforce(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """REINFORCE without a baseline (Williams 1992): A = r.

    Example: r=[1,0,0,1] -> [1,0,0,1].
    """
    return sequence_rewards(rewards).clone()  # [N]


@estimator("reinforce_batch", scope="batch")
def reinforce_batch(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """REINFORCE with a batch-mean baseline (Williams 1992): A = r - mean over the whole batch.

    Example: r=[1,0,0,1,1,1,1,0]: mean 0.625 -> [0.375, -0.625, -0.625, 0.375, 0.375, 0.375, 0.375, -0.625].
    """
    r = sequence_rewards(rewards)
    return r - mean(r, weights(valid, r.shape))  # [N]


def reward_to_go(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1} over response tokens, 0 outside `mask`. A gap inside a response (tool
    output, which the policy did not sample) is skipped: the return carries across it undiscounted.

    Example, one response of 3 tokens with r=[0, -0.1, 1], gamma=0.5: G_2 = 1, G_1 = -0.1 + 0.5 = 0.4,
    G_0 = 0 + 0.5*0.4 = 0.2.
    """
    out = torch.zeros_like(token_rewards, dtype=torch.float32)
    running = torch.zeros(token_rewards.shape[0], device=token_rewards.device)
    for t in reversed(range(token_rewards.shape[1])):  # a scan over T, vectorised over the batch
        m = mask[:, t]
        running = torch.where(m > 0, token_rewards[:, t] + gamma * running, running)
        out[:, t] = running * m
    return out  # [N, T]


def _token_weights(mask: torch.Tensor, valid: Optional[torch.Tensor]) -> torch.Tensor:
    """[N, T] float: the response tokens of the valid rows."""
    m = mask.float()
    return m if valid is None else m * valid[:, None].float()


@estimator("reinforce_pp", scope="batch", token_level=True)
def reinforce_pp(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """REINFORCE++ (arXiv 2501.03262 §3; verl's reinforce_plus_plus): per-token rewards (the scalar reward on
    the last response token, -kl.coef*KL_t on every token with `algo.kl.where: reward`), their discounted
    reward-to-go G_t (gamma = cfg.gamma), whitened over all response tokens of the batch:
    (G_t - mean) / (std + adv_eps), std with ddof `cfg.std_ddof`. Returns [N, T], 0 outside `mask`.

    Example, gamma=1, no KL, 2 rows of response lengths 2 and 1 with r=[1, 0]: G = [1, 1 | 0] over the 3
    tokens: mean 2/3, std (ddof 1) sqrt(1/3)=0.57735 -> [0.5774, 0.5774 | -1.1547].
    """
    if mask is None:
        raise ValueError("reinforce_pp needs the response mask [N, T]")
    g = reward_to_go(token_level_rewards(rewards, mask), mask, cfg.gamma)  # [N, T]
    w = _token_weights(mask, valid)
    return whiten(g, w, cfg.adv_eps, cfg.std_ddof) * mask  # [N, T]


@estimator("reinforce_pp_seq", scope="batch")
def reinforce_pp_seq(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """REINFORCE++ per sequence (a simplification of arXiv 2501.03262): the sequence reward whitened over the
    batch's sequences, (r - batch mean) / (batch std + adv_eps), so every sequence counts once whatever its length.

    Example, ddof 0: r=[1,0,0,1,1,1,1,0]: mean 0.625, std sqrt(0.625*0.375)=0.48412
    -> 0.375/0.48412 = 0.7746 for r=1, -0.625/0.48412 = -1.2910 for r=0 (ddof 1 divides by 0.51755 instead).
    """
    r = sequence_rewards(rewards)
    return whiten(r, weights(valid, r.shape), cfg.adv_eps, cfg.std_ddof)  # [N]


@estimator("reinforce_pp_baseline", scope="batch", min_group_size=2)
def reinforce_pp_baseline(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None,
                          valid=None) -> torch.Tensor:
    """REINFORCE++-baseline (arXiv 2501.03262): subtract the group mean, then whiten over the batch's sequences.

    A group whose rewards are all equal stays exactly 0. Example, ddof 0: r=[1,0,0,1 | 1,1,1,0]: centred
    [.5,-.5,-.5,.5 | .25,.25,.25,-.75] (mean 0), batch std sqrt(1.75/8)=0.46771
    -> [1.0690, -1.0690, ... | 0.5345 x3, -1.6036].
    """
    r = group_view(rewards, group_size)  # [P, G]
    w = weights(valid, r.shape)
    out = whiten(centred(r, w), w, cfg.adv_eps, cfg.std_ddof)  # [P, G]
    return torch.where(all_equal(r, w), 0.0, out).reshape(-1)  # [N]


@estimator("rft")
def rft(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """Online rejection-sampling fine-tuning (DeepSeekMath, arXiv 2402.03300 §5.2): A = 1 if r > 0 else 0.

    Correct samples (r > 0) get coefficient 1, the rest are dropped.
    Example: r=[1, 0, -1, 0.5] -> [1, 0, 0, 1].
    """
    return (sequence_rewards(rewards) > 0).float()  # [N]


@estimator("win_rate", scope="group", min_group_size=2)
def win_rate(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """SPPO's preference term (arXiv 2405.00675 §4): P_i - 1/2, P_i = win rate of sample i against the
    other G-1 samples of its group (the other valid ones), judged by the verifiable reward (a tie counts 1/2).

    The coefficient the `sppo` loss needs. Example, one group r=[1,0,0,1]:
    sample 0 beats both 0s and ties the other 1 -> P=(1+1+.5)/3=5/6 -> 1/3; a 0 sample -> (0+.5+0)/3-1/2 = -1/3.
    """
    if group_size < 2:
        raise ValueError(f"win_rate needs group_size >= 2 (got {group_size})")
    r = group_view(rewards, group_size)  # [P, G]
    w = weights(valid, r.shape)
    diff = r[:, :, None] - r[:, None, :]  # [P, G, G] r_i - r_j
    score = (diff > 0).float() + 0.5 * (diff == 0).float()  # 1 win, 1/2 tie, 0 loss (the diagonal ties itself)
    if w is None:
        wins = (score.sum(-1) - 0.5) / (group_size - 1)  # [P, G] without the self-tie
    else:
        wins = ((score * w[:, None, :]).sum(-1) - 0.5) / (w.sum(-1, keepdim=True) - 1).clamp(min=1)
    return (wins - 0.5).reshape(-1)  # [N]


def gae_returns(token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                lam: float):
    """Generalised advantage estimation (Schulman et al., arXiv 1506.02438) over response tokens.

    delta_t = r_t + gamma*V_{t+1} - V_t, A_t = delta_t + gamma*lam*A_{t+1}, with V and A = 0 after the
    last response token (t+1 is the next response token: a gap of tool output is skipped); returns (advantages [N, T], returns [N, T] = A + V), both 0 outside `mask`.
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
        next_v = torch.where(m > 0, values[:, t], next_v)  # masked positions (tool output, prompt) are skipped
        next_a = torch.where(m > 0, a_t, next_a)
    return adv, (adv + values) * mask


@estimator("gae", scope="batch", needs_critic=True, token_level=True)
def gae(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None):
    """PPO with a learned critic (Ouyang et al. 2022; GAE, arXiv 1506.02438): per-token GAE advantages,
    whitened over the step's response tokens (masked mean and std with ddof `cfg.std_ddof`, + adv_eps).

    gamma = cfg.gamma, lambda = cfg.lam; the critic (algo.critic) is loaded only for this estimator, and
    the un-whitened GAE returns (A + V) come back as its regression targets (an invalid sample's are its
    own values: A = 0). The whitening is a statistic over the whole step (scope "batch").
    Example (before whitening): see `gae_returns`; whitening [.5, .2] with ddof 0 gives [1, -1].
    """
    if values is None or mask is None:
        raise ValueError("gae needs the critic's values [N, T] and the response mask [N, T]")
    adv, returns = gae_returns(token_level_rewards(rewards, mask), values, mask, cfg.gamma, cfg.lam)
    if valid is not None:
        returns = torch.where(valid[:, None], returns, values * mask)
    w = _token_weights(mask, valid)
    return whiten(adv, w, cfg.adv_eps, cfg.std_ddof) * mask, returns  # [N, T] whitened advantages, value targets
