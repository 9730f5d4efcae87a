"""Off-policy correction (`algo.is_mode`): importance weights for tokens another policy sampled.

The rollout engine samples token y_t with log-prob log b_t: the behaviour policy, which differs from the
trainer's policy π_old by the engine's numerics (bf16, other kernels) and, with stale or partial rollouts,
by older weights. Before the update the trainer recomputes log π_old(y_t); ρ_t = π_old/b_t weights the
token's policy loss so that the gradient is the trainer policy's. Each entry of IS_MODES turns the
per-token log-ratios into weights [n, T] (no gradient) and declares its traits (`none` also `identity`: the
update skips it and logs no `policy/is_*` metric):

- `level`: "token" uses ρ_t itself; "sequence" one ratio per row, ρ = exp(Σ_t log ρ_t) over the row's loss
  tokens (the product of its tokens' ratios), given to every token of the row;
- `bound`: "truncate" clamps the ratio into [is_min, is_cap] (TIS); "mask" keeps it where it lies in
  [is_min, is_cap] and gives weight 0 outside (MIS / IcePop); None: no correction.

The four corrected modes are TRL 1.16's `vllm_importance_sampling_mode` values with C_min = is_min (0 = none)
and C_max = is_cap (tests/test_offpolicy.py runs TRL's code on the same inputs). Padding and prompt tokens
(mask 0) have log-ratio 0, and a NaN behaviour log-prob counts as 0 (ratio 1), as in TRL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from rlreason.registry import Registry

IS_MODES = Registry("importance-sampling mode")


@dataclass
class ISWeights:
    """One micro-batch's correction: the weight of every token and which tokens the bounds touched."""

    weight: torch.Tensor  # [n, T] multiplies each token's policy loss
    masked: torch.Tensor  # [n, T] bool: weight set to 0 (ratio outside the bounds, *_mask modes)
    capped: torch.Tensor  # [n, T] bool: ratio clamped to a bound (*_truncate modes)

    def metric_shares(self, mask: torch.Tensor, tokens: float) -> Dict[str, float]:
        """This micro-batch's share of the rollout's `policy/is_*` metrics over its loss tokens (`tokens`: all of
        the rollout's loss tokens, every rank): masked and capped fractions and the mean weight."""
        m = mask.bool()
        return {"policy/is_masked_frac": float((self.masked & m).sum()) / tokens,
                "policy/is_capped_frac": float((self.capped & m).sum()) / tokens,
                "policy/is_weight_mean": float((self.weight * mask).sum()) / tokens}


def _ratio(log_ratio: torch.Tensor, mask: torch.Tensor, level: str) -> torch.Tensor:
    """ρ [n, T]: exp of the masked log-ratio per token, or of its row sum broadcast over the row."""
    lr = torch.nan_to_num(log_ratio * mask, nan=0.0)
    if level == "sequence":
        lr = lr.sum(-1, keepdim=True).expand_as(lr)
    return torch.exp(lr)


def _bounded(rho: torch.Tensor, bound: str, cap: float, lo: float) -> ISWeights:
    out = (rho > cap) | (rho < lo)
    none = torch.zeros_like(out)
    if bound == "truncate":
        return ISWeights(rho.clamp(min=lo, max=cap), none, out)
    return ISWeights(rho.masked_fill(out, 0.0), out, none)


def _mode(level: str, bound: str):
    def weights(log_ratio: torch.Tensor, mask: torch.Tensor, cap: float, lo: float) -> ISWeights:
        return _bounded(_ratio(log_ratio, mask, level), bound, cap, lo)
    return weights


def _unit(log_ratio: torch.Tensor, mask: torch.Tensor, cap: float, lo: float) -> ISWeights:
    untouched = torch.zeros(mask.shape, dtype=torch.bool, device=mask.device)
    return ISWeights(torch.ones(mask.shape, device=mask.device), untouched, untouched)


def _register(name: str, level: Optional[str], bound: Optional[str], doc: str) -> None:
    fn = _mode(level, bound) if bound else _unit
    fn.__doc__ = doc
    IS_MODES.register(name, level=level, bound=bound, identity=bound is None)(fn)


_register("none", None, None, "No correction: every token's weight is 1 (algo.tis_cap > 0 still means token_truncate).")
_register("token_truncate", "token", "truncate",
          "w_t = clamp(rho_t, is_min, is_cap), rho_t = pi_old/pi_behaviour per token: truncated IS (TIS, Yao et al. "
          "2025); TRL's token_truncate.")
_register("token_mask", "token", "mask",
          "w_t = rho_t inside [is_min, is_cap], else 0: masked IS per token (MIS; IcePop, arXiv 2510.18855); TRL's "
          "token_mask.")
_register("sequence_truncate", "sequence", "truncate",
          "w_t = clamp(rho, is_min, is_cap) for every token, rho = prod_t rho_t over the sequence; TRL's "
          "sequence_truncate.")
_register("sequence_mask", "sequence", "mask",
          "w_t = rho inside [is_min, is_cap], else 0 for the whole sequence, rho = prod_t rho_t; TRL's sequence_mask "
          "(its default).")


def resolve(algo) -> Tuple[str, float, float]:
    """(mode, is_cap, is_min) in effect. `algo.tis_cap` > 0 (the older key) is token_truncate with cap tis_cap;
    config validation refuses it together with another is_mode."""
    if algo.tis_cap > 0:
        return "token_truncate", algo.tis_cap, algo.is_min
    return algo.is_mode, algo.is_cap, algo.is_min


def importance_weights(algo, log_ratio: torch.Tensor, mask: torch.Tensor) -> Optional[ISWeights]:
    """The weights [n, T] for log_ratio = log π_old − log π_behaviour [n, T] on loss `mask` [n, T] under the
    config's mode; None when no correction is configured (a mode with the trait `identity`)."""
    mode, cap, lo = resolve(algo)
    if IS_MODES.traits(mode).get("identity"):
        return None
    return IS_MODES.get(mode)(log_ratio, mask, cap, lo)
