"""KL estimators between the policy and the frozen reference, per token (Schulman, "Approximating KL divergence")."""
from __future__ import annotations

import torch

from rlreason.registry import Registry

KL_ESTIMATORS = Registry("KL estimator")
LOG_RATIO_CLAMP = 20.0  # |log(ref/pi)| is clamped to this before exponentiating (k3), to avoid inf


@KL_ESTIMATORS.register("k1")
def k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = log pi - log ref (unbiased, high variance, can be negative). Example: logp=-1, ref=-2 -> 1."""
    return logp - ref_logp


@KL_ESTIMATORS.register("k2")
def k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = (log pi - log ref)^2 / 2 (biased, low variance). Example: logp=-1, ref=-2 -> 0.5."""
    return 0.5 * (logp - ref_logp) ** 2


@KL_ESTIMATORS.register("k3")
def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = exp(ref - pi) - (ref - pi) - 1 (unbiased, >= 0; GRPO's choice); log-ratio clamped to +-20.

    Example: logp=-1, ref=-2 -> e^-1 + 1 - 1 = 0.3679.
    """
    d = (ref_logp - logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.exp(d) - d - 1
