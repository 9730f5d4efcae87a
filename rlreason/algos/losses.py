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
    Dual clip (Ye et al., arXiv 1912.09729), on when cfg.clip_c > 0 (use clip_c > 1, e.g. 3): for A < 0
    the loss is further bounded, min(ppo_loss, -clip_c*A). Example: A=-1, rho=5, clip_c=3 -> min(5, 3) = 3.
    Stats are sums over loss tokens (the trainer divides by the step's token count): clipfrac counts
    tokens where the clipped term is active; ratio_mean sums the ratios (a mean once divided);
    with dual clip on, policy/dual_clipfrac counts tokens where the -clip_c*A bound is active.
    """
    ratio = torch.exp(logp - old_logp)  # [n, T]
    unclipped = ratio * adv
    clipped = ratio.clamp(1 - cfg.clip_low, 1 + cfg.clip_high) * adv
    loss = -torch.minimum(unclipped, clipped)  # [n, T]
    clip_c = getattr(cfg, "clip_c", 0.0)
    if clip_c > 0:
        bound = -clip_c * adv  # [n, T]
        dual = (adv < 0) & (bound < loss)
        loss = torch.where(dual, bound, loss)
    with torch.no_grad():
        m = mask.bool()
        stats = {
            "policy/clipfrac": ((clipped < unclipped) & m).sum(),
            "policy/ratio_mean": (ratio * mask).sum(),
        }
        if clip_c > 0:
            stats["policy/dual_clipfrac"] = (dual & m).sum()
    return loss, stats


@LOSSES.register("pg")
def pg(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
       cfg) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Vanilla policy gradient (REINFORCE, Williams 1992): -A * logp, no ratio, no clip (on-policy only).

    Example: A=2, logp=-0.5 -> loss 1.0, d loss / d logp = -2.
    Stats match ppo_clip's keys: clipfrac is 0; ratio_mean sums exp(logp - old_logp) over loss tokens.
    """
    return -adv * logp, _ratio_stats(logp, old_logp, mask)  # [n, T]


@LOSSES.register("gspo")
def gspo(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
         cfg) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """GSPO (arXiv 2507.18071): sequence ratio s_i = exp(mean_t (logp - old_logp)) clipped as in PPO.

    loss_t = -min(s_i*A, clip(s_i, 1-clip_low, 1+clip_high)*A), broadcast to every token of sequence i,
    the gradient flowing through s_i (the paper uses tiny ranges such as clip_low 3e-4, clip_high 4e-4).
    Example: log-ratios [0.1, 0.3] on 2 loss tokens -> s = exp(0.2) = 1.2214; A=1, clip 0.2
    -> loss -min(1.2214, 1.2) = -1.2 on both tokens (clipped: no gradient).
    Stats as ppo_clip: clipfrac counts the loss tokens of clipped sequences; ratio_mean sums s_i over them.
    """
    lengths = mask.sum(-1, keepdim=True).clamp(min=1)  # [n, 1]
    seq_ratio = torch.exp(((logp - old_logp) * mask).sum(-1, keepdim=True) / lengths)  # [n, 1]
    unclipped = seq_ratio * adv  # [n, T]
    clipped = seq_ratio.clamp(1 - cfg.clip_low, 1 + cfg.clip_high) * adv
    loss = -torch.minimum(unclipped, clipped)  # [n, T]
    with torch.no_grad():
        m = mask.bool()
        stats = {
            "policy/clipfrac": ((clipped < unclipped) & m).sum(),
            "policy/ratio_mean": (seq_ratio * mask).sum(),
        }
    return loss, stats


def _sequence_log_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """s_i = log pi(y_i)/pi_old(y_i) = sum over response tokens of (logp - old_logp): [n, T] -> [n, 1]."""
    return ((logp - old_logp) * mask).sum(-1, keepdim=True)


def _sequence_adv(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One coefficient per sequence: the masked mean of adv [n, T] -> [n, 1] (the value itself when constant)."""
    return (adv * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)


def _ratio_stats(logp, old_logp, mask) -> Dict[str, torch.Tensor]:
    with torch.no_grad():
        return {"policy/clipfrac": torch.zeros((), device=logp.device),
                "policy/ratio_mean": (torch.exp(logp - old_logp) * mask).sum()}


@LOSSES.register("kimi", pairs_with=("dr_grpo",))
def kimi(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
         cfg) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Kimi k1.5 online mirror descent (arXiv 2501.12599 §2.3.2): (A_i - tau*s_i)^2 / (2*tau).

    A_i = r_i - group mean (pair with advantage `dr_grpo`), s_i = sequence log-ratio log pi/pi_old,
    tau = cfg.kimi_tau. The paper's squared loss divided by 2*tau, so the gradient is exactly the paper's
    -(A_i - tau*s_i) * grad s_i; at ratio 1 that is -A_i * grad log pi(y_i), vanilla PG.
    The sequence loss is broadcast to each of its tokens (like gspo): `seq_mean_token_mean` then gives the
    paper's mean over samples. Example: A=1, s=0.5, tau=0.5 -> (1-0.25)^2/1 = 0.5625 on every token.
    """
    s = _sequence_log_ratio(logp, old_logp, mask)  # [n, 1]
    a = _sequence_adv(adv, mask)  # [n, 1]
    loss = ((a - cfg.kimi_tau * s) ** 2 / (2 * cfg.kimi_tau)).expand_as(logp)  # [n, T]
    return loss, _ratio_stats(logp, old_logp, mask)



@LOSSES.register("sppo", pairs_with=("win_rate",))
def sppo(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
         cfg) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """SPPO (arXiv 2405.00675 §4): (s_i - eta*(P_i - 1/2))^2, s_i = log pi(y_i)/pi_old(y_i).

    P_i - 1/2 comes from the `win_rate` advantage (the win rate within the group, ties 1/2); eta = cfg.sppo_eta.
    Gradient 2*(s_i - eta*(P_i - 1/2)) * grad s_i; at ratio 1 it is -2*eta*(P_i - 1/2) * grad log pi(y_i).
    Broadcast per token as gspo/kimi. Example: P-1/2 = 1/3, eta=1.5, s=0.1 -> (0.1-0.5)^2 = 0.16.
    """
    s = _sequence_log_ratio(logp, old_logp, mask)  # [n, 1]
    a = _sequence_adv(adv, mask)  # [n, 1]
    loss = ((s - cfg.sppo_eta * a) ** 2).expand_as(logp)  # [n, T]
    return loss, _ratio_stats(logp, old_logp, mask)



@LOSSES.register("cispo")
def cispo(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
          cfg) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """CISPO (MiniMax-M1, arXiv 2506.13585 §3.1): -sg(clip(rho, 1-cispo_eps_low, 1+cispo_eps_high)) * A * logp.

    rho = exp(logp - old_logp). The clipped importance weight carries no gradient, so no token's gradient is
    dropped (PPO's clip zeroes it): d loss / d logp = -clip(rho) * A on every token. MiniMax tunes only the
    upper bound; the defaults (cispo_eps_low 1.0: lower bound 0, i.e. none; cispo_eps_high 4.0: weight <= 5)
    give TRL 1.16's loss_type="cispo" with its recommended epsilon_high=5.0 (weight = min(rho, 5)).
    The paper (and TRL) normalise by the tokens of the whole batch: `loss_agg=token_mean`.
    Example: rho=6, A=1, logp=-0.5 -> weight 5, loss 2.5, gradient -5 (ppo_clip: 0).
    Stats: clipfrac counts loss tokens whose weight was clipped (either bound, either sign of A);
    ratio_mean sums rho over loss tokens.
    """
    ratio = torch.exp(logp - old_logp).detach()  # [n, T]
    weight = ratio.clamp(1 - cfg.cispo_eps_low, 1 + cfg.cispo_eps_high)
    loss = -weight * adv * logp  # [n, T]
    with torch.no_grad():
        m = mask.bool()
        stats = {"policy/clipfrac": ((weight != ratio) & m).sum(), "policy/ratio_mean": (ratio * mask).sum()}
    return loss, stats
