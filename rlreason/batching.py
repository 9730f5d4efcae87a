"""Right-padded token batches for the policy update (stage 4) and for SFT: one padding routine for both.

A row is prompt ids + completion ids; the completion span is what a loss may cover.
Example, pad 0: prompts [[5, 6], [7]] with completions [[8], [9, 10]] ->
ids [[5, 6, 8], [7, 9, 10]], attention [[1, 1, 1], [1, 1, 1]], completion spans (2, 3) and (1, 3).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from rlreason.types import Rollout, TrainBatch


def right_pad(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
              pad_id: int) -> Tuple[torch.Tensor, torch.Tensor, List[Tuple[int, int]]]:
    """(input_ids [N, T], attention_mask [N, T], [(start, end)] of each completion) for prompt+completion rows."""
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    N, T = len(lengths), max(lengths)
    ids = torch.full((N, T), pad_id, dtype=torch.long)
    attn = torch.zeros((N, T), dtype=torch.long)
    spans = []
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, : lengths[i]] = torch.tensor(list(p) + list(c))
        attn[i, : lengths[i]] = 1
        spans.append((len(p), lengths[i]))
    return ids, attn, spans


def make_train_batch(rollout: Rollout, advantages: Optional[torch.Tensor], pad_id: int,
                     mask_truncated: bool = False) -> TrainBatch:
    """Right-pad prompt+completion ids; loss_mask marks the completion tokens the policy sampled (0 on tool
    output, `Completion.tool_mask`); engine log-probs sit at their positions (0 where masked), and so do the
    policy versions that sampled them when the completions carry them (partial rollouts; -1 elsewhere).

    With `mask_truncated`, completions that hit max_new_tokens get an all-zero loss mask (DAPO overlong filtering).
    """
    G = rollout.group_size
    ids, attn, spans = right_pad([rollout.prompt_ids[i // G] for i in range(len(rollout))],
                                 [c.token_ids for c in rollout.completions], pad_id)
    loss_mask = torch.zeros(ids.shape)
    engine_logp = torch.zeros(ids.shape)
    versioned = any(c.versions for c in rollout.completions)
    versions = torch.full(ids.shape, -1, dtype=torch.long) if versioned else None  # [N, T]
    for i, ((start, end), c) in enumerate(zip(spans, rollout.completions)):
        policy = torch.tensor(c.policy_mask, dtype=loss_mask.dtype)  # [L] 0 on tool-output tokens
        loss_mask[i, start:end] = 0 if (mask_truncated and c.truncated) else policy
        engine_logp[i, start:end] = torch.tensor(c.logprobs) * policy
        if versioned and end > start:
            versions[i, start:end] = torch.tensor(c.versions, dtype=torch.long)
    return TrainBatch(input_ids=ids, attention_mask=attn, loss_mask=loss_mask, old_logp=engine_logp,
                      advantages=advantages, versions=versions)


def sft_batch(pairs: Sequence[Tuple], pad_id: int):
    """Right-padded input_ids [B, T], attention_mask [B, T] and labels [B, T] (-100 outside completions).

    Each item is (prompt_ids, completion_ids) or (prompt_ids, completion_ids, loss_mask [L]): -100 also
    where the mask is 0 (a demonstration's tool output)."""
    ids, attn, spans = right_pad([x[0] for x in pairs], [x[1] for x in pairs], pad_id)
    labels = torch.full(ids.shape, -100, dtype=torch.long)
    for i, (start, end) in enumerate(spans):
        labels[i, start:end] = ids[i, start:end]
        if len(pairs[i]) > 2:
            keep = torch.tensor(pairs[i][2], dtype=torch.bool)  # [L]
            labels[i, start:end] = labels[i, start:end].masked_fill(~keep, -100)
    return ids, attn, labels
