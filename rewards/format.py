"""Output-format reward: reasoning in one think block, then a (boxed) answer.

The format reward of DeepSeek-R1 (DeepSeek-AI, 2025, §2.2.2): the model is
paid for putting its reasoning between think tags and its answer after them.
Only the generated continuation is checked; when the prompt already ends with
the opening tag, set `think_open: ""` and the completion must then start
directly with the reasoning.
"""
from __future__ import annotations

from rlreason.rewards.terms import REWARDS, score_each
from rlreason.rewards.math import last_boxed
from rlreason.types import Completion, RewardOutput, Rollout, Sample


def is_well_formed(
    text: str, think_open: str = "<think>", think_close: str = "</think>", require_boxed: bool = True
) -> bool:
    """Whether `text` is `<think>reasoning</think>answer` with exactly one tag pair.

    The open tag must come first (after optional whitespace), the reasoning must
    be non-blank, the answer section non-blank and, if `require_boxed`, contain
    a `\\boxed{...}` with balanced braces. An empty `think_open` means the
    prompt supplied it: then only the close tag is looked for.

    >>> is_well_formed("<think>2+2=4</think> \\\\boxed{4}"), is_well_formed("<think></think> \\\\boxed{4}")
    (True, False)
    """
    if not think_close or text.count(think_close) != 1:
        return False
    body = text.lstrip()
    if think_open:
        if text.count(think_open) != 1 or not body.startswith(think_open):
            return False
        body = body[len(think_open):]
    reasoning, answer = body.split(think_close, 1)
    if not reasoning.strip() or not answer.strip():
        return False
    return last_boxed(answer) is not None if require_boxed else True


@REWARDS.register("format")
def format_reward(
    rollout: Rollout,
    think_open: str = "<think>",
    think_close: str = "</think>",
    require_boxed: bool = True,
    score: float = 1.0,
) -> RewardOutput:
    """`score` when the completion is <think>reasoning</think> then a \\boxed{} answer, else 0.

    Exactly one tag pair, the open tag first, non-blank reasoning and answer;
    `require_boxed: false` accepts any non-blank answer. Examples:
    "<think>12*11=132</think> \\boxed{132}" -> 1.0; "<think>12*11=132 \\boxed{132}" (no
    close tag) -> 0.0; "<think>a</think><think>b</think> \\boxed{1}" -> 0.0;
    "<think>a</think> 132" -> 0.0 (no box) or 1.0 with require_boxed false.
    """

    def check(sample: Sample, completion: Completion) -> float:
        ok = is_well_formed(completion.text, think_open, think_close, require_boxed)
        return score if ok else 0.0

    return RewardOutput(scores=score_each(rollout, check))
