"""Mixed precision (`model.dtype`): fp32 master weights, bf16 compute.

With `model.dtype: bfloat16` the policy (and reference, critic) are loaded and kept in float32: AdamW
updates fp32 weights and keeps fp32 state, so an update far below bf16's resolution (lr 1e-6 on weights
of size ~1e-2 moves them by ~1e-8, while bf16 steps there are ~1e-4) is not rounded away. The forward
passes (rollout, log-probs, the update) run under `torch.autocast(bfloat16)`: matrix products in bf16,
reductions and the log-softmax in fp32. Checkpoints keep the fp32 master weights, so resume is exact;
`final/` is saved in bf16. `model.fp32_head: true` also keeps the LM head's product in fp32 (a known fix
for engine-trainer log-prob mismatch in bf16). float16 would need loss scaling, which is not built:
validation refuses it.

Example: a weight 0.0123 in bf16 is 0.01231384 with neighbours 6.1e-5 apart; AdamW's first step at lr 1e-6
moves it by 1e-6, which bf16 rounds back to the same value, and an fp32 master keeps.
"""
from __future__ import annotations

import contextlib
import types
from typing import ContextManager

import torch

COMPUTE = {"float32": None, "bfloat16": torch.bfloat16}  # model.dtype -> autocast dtype (None: plain fp32)
MASTER = "float32"  # the dtype of every trained or reference weight


def compute(dtype: str, device: torch.device) -> ContextManager:
    """The forward-pass context of `model.dtype`: autocast to bf16, or nothing for float32.

    The weight-cast cache is off: autocast would otherwise keep each weight's bf16 copy until the
    context exits, and the run's forward passes would go on using the weights of before the update.
    """
    if COMPUTE[dtype] is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=COMPUTE[dtype], cache_enabled=False)


def fp32_head(model: torch.nn.Module) -> None:
    """Make `model`'s output projection (`get_output_embeddings()`) compute in fp32 even under autocast.

    Nothing is copied and the state dict keeps its names: only this module's forward is replaced.
    """
    head = model.get_output_embeddings()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            bias = None if self.bias is None else self.bias.float()
            return torch.nn.functional.linear(x.float(), self.weight.float(), bias)

    head.forward = types.MethodType(forward, head)


def saved_state(model: torch.nn.Module, dtype: str):
    """The state dict that saves `model` in `dtype` (floating tensors cast), or None for float32 (save it as it is)."""
    target = COMPUTE[dtype]
    if target is None:
        return None
    return {k: v.to(target) if v.is_floating_point() else v for k, v in model.state_dict().items()}
