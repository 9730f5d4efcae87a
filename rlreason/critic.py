"""The value model for `algo.advantage: gae`: a transformer backbone plus a scalar head.

Loaded only when the chosen advantage estimator has `needs_critic` (DESIGN.md: no critic by default).
`values[:, t]` estimates the return of the state that has seen tokens < t, i.e. the state in which
token t is chosen, so it lines up with `policy.token_logprobs` (position t holds log p(tok_t | <t)).
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from rlreason.errors import ModelLoadError, first_line
from rlreason.policy import DTYPES, pick_device, position_ids, resolve_model_path


class ValueModel(torch.nn.Module):
    """backbone (e.g. LlamaModel) -> last hidden state -> Linear(hidden, 1), zero-initialised (V = 0 at start)."""

    def __init__(self, backbone: torch.nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # [n, T] each
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                               use_cache=False).last_hidden_state  # [n, T, H]
        v = self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()  # [n, T] value after seeing <= t
        return torch.nn.functional.pad(v[:, :-1], (1, 0))  # [n, T] value before token t


def load_critic(path: str, dtype: str = "float32", device: str = "auto") -> ValueModel:
    """A ValueModel whose backbone is the base model (no LM head) of `path` (HF id or folder)."""
    from transformers import AutoModel

    where = resolve_model_path(path)
    try:
        backbone = AutoModel.from_pretrained(where, dtype=DTYPES[dtype])
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load critic '{path}': {first_line(err)}") from None
    critic = ValueModel(backbone, backbone.config.hidden_size).to(DTYPES[dtype])
    return critic.to(pick_device(device))


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """PPO value loss per token [n, T]: 0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2).

    With clip = 0 it is 0.5 * (V - R)^2. Example: V=1.5, V_old=1, R=2, c=0.2 -> max(0.25, 0.64)/2 = 0.32.
    Stats (sums over loss tokens): critic/vf_clipfrac counts tokens where the clipped term is larger.
    """
    unclipped = (values - returns) ** 2
    if clip > 0:
        clipped_v = old_values + (values - old_values).clamp(-clip, clip)
        clipped = (clipped_v - returns) ** 2
        loss = 0.5 * torch.maximum(unclipped, clipped)
        frac = ((clipped > unclipped) & mask.bool()).sum()
    else:
        loss, frac = 0.5 * unclipped, torch.zeros((), device=values.device)
    return loss, {"critic/vf_clipfrac": frac.detach()}
