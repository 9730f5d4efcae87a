"""Length shaping: Kimi k1.5's group length penalty and DAPO's soft overlong punishment.

Both measure length in generated tokens, `len(completion.token_ids)`, never in
characters.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from rlreason.rewards.terms import REWARDS
from rlreason.types import RewardOutput, Rollout


def kimi_lambdas(lengths: List[int]) -> List[float]:
    """λ_i = 0.5 − (len_i − min_len) / (max_len − min_len) over one group; all 0 when max = min.

    >>> kimi_lambdas([10, 20, 30]), kimi_lambdas([7, 7])
    ([0.5, 0.0, -0.5], [0.0, 0.0])
    """
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    return [0.5 - (n - lo) / (hi - lo) for n in lengths]


@REWARDS.register("kimi_length")
def kimi_length(
    rollout: Rollout,
    correct_term: str = "",
    correct_params: Optional[Dict[str, Any]] = None,
    warmup_steps: int = 0,
    step: int = 0,
    is_correct: Optional[List[bool]] = None,
) -> RewardOutput:
    """Kimi k1.5 length penalty (arXiv 2501.12599 §2.3.3): λ for correct answers, min(0, λ) for wrong ones, per group.

    Within the G completions of one prompt, λ_i = 0.5 − (len_i − min_len) /
    (max_len − min_len) with lengths in tokens; 0 for the whole group when all
    lengths are equal. "Correct" is the run's own verdict (`is_correct`, [N], given
    by `compute_rewards` from the correctness term of the sample's task), or,
    when `correct_term` is set, that term run with `correct_params` scores > 0.
    Before `warmup_steps` the penalty is 0 (the paper warms up without it);
    `step` comes from the trainer. Scale it with the term's `weight`. Example,
    one group with lengths [10, 20, 30], correctness [yes, yes, no]:
    λ = [0.5, 0, −0.5] -> scores [0.5, 0.0, −0.5]; correctness [no, no, yes] ->
    [0.0, 0.0, −0.5].
    """
    if correct_term == "kimi_length":
        raise ValueError("kimi_length: correct_term cannot be kimi_length itself")
    if warmup_steps < 0:
        raise ValueError("kimi_length: warmup_steps must be >= 0")
    if step < warmup_steps:
        return RewardOutput(scores=[0.0] * len(rollout), counts={"active": 0})
    if correct_term:
        correct = [s > 0 for s in REWARDS.get(correct_term)(rollout, **dict(correct_params or {})).scores]
    else:
        correct = is_correct
    if correct is None:
        raise ValueError("kimi_length: no correctness verdicts (compute_rewards gives them; or set correct_term)")
    G = rollout.group_size
    scores: List[float] = []
    for start in range(0, len(rollout), G):
        group = rollout.completions[start:start + G]
        for lam, ok in zip(kimi_lambdas([len(c.token_ids) for c in group]), correct[start:start + G]):
            scores.append(lam if ok else min(0.0, lam))
    return RewardOutput(scores=scores, counts={"active": 1})


@REWARDS.register("overlong")
def overlong(rollout: Rollout, max_len: int, buffer: int) -> RewardOutput:
    """DAPO soft overlong punishment (arXiv 2503.14476 eq. 13): 0 up to max_len − buffer tokens, then linear to −1, −1 beyond.

    R(y) = 0 if |y| <= max_len − buffer; ((max_len − buffer) − |y|) / buffer if
    |y| <= max_len; −1 otherwise; |y| in tokens. Add it to the correctness
    reward (weight 1 in the paper, with max_len 20480 and buffer 4096). Example,
    max_len 10, buffer 4: lengths [6, 8, 10, 11] -> [0.0, −0.5, −1.0, −1.0].
    """
    if buffer < 1 or max_len <= buffer:
        raise ValueError(f"overlong: need 1 <= buffer < max_len (got max_len={max_len}, buffer={buffer})")
    free = max_len - buffer
    scores, punished = [], 0
    for c in rollout.completions:
        n = len(c.token_ids)
        score = 0.0 if n <= free else (free - n) / buffer if n <= max_len else -1.0
        punished += score < 0
        scores.append(score)
    return RewardOutput(scores=scores, counts={"punished": punished})
