"""The optimizer and its learning-rate schedule, shared by RL (`train.*`) and SFT.

`lr_factor` multiplies the peak LR: linear warm-up over `warmup` steps, then constant, linear decay to 0,
or cosine decay to `floor`. Example: warmup 4 -> step 0 gets 0.25; cosine at the half-way step gets 0.5.
"""
from __future__ import annotations

import math
from typing import Callable, Tuple

import torch

SCHEDULES = ("constant", "linear", "cosine")


def lr_factor(step: int, warmup: int, total: int, schedule: str, floor: float = 0.0) -> float:
    """Multiplier of the peak LR for optimizer step `step` (0-based): linear warm-up, then constant/linear/cosine
    (cosine ends at `floor`)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    frac = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - frac)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def lr_at(step: int, peak: float, warmup: int, total: int, schedule: str, floor: float = 0.0) -> float:
    """The LR itself at `step` (for a loop that sets it by hand, as SFT does): peak * lr_factor, with the warm-up
    as peak * (step + 1) / warmup (that order of operations, which SFT's shipped models were trained with)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * lr_factor(step, warmup, total, schedule, floor)


def adamw(module: torch.nn.Module, lr: float, train, fused: bool = True
          ) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over `module` with `train.betas`, `train.weight_decay` and the `train.*` LR schedule."""
    schedule: Callable[[int], float] = lambda s: lr_factor(s, train.warmup_steps, train.steps,  # noqa: E731
                                                           train.lr_schedule)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, betas=tuple(train.betas), weight_decay=train.weight_decay,
                            fused=fused or None)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)
