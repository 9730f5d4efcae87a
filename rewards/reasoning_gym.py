"""Reward for reasoning-gym tasks: the package's own scorer (Stojanovski et al. 2025, arXiv 2505.24760).

The completion's answer is extracted (`extract`: the last `\\boxed{}` by default,
matching the project's templates; or the last `<answer>...</answer>`, the
package's own convention; or the text after `</think>`), then scored by
`dataset.score_answer(answer, entry)` of the generator that made the sample, with
the sample's generator config. Scores are in [0, 1]; some generators give
partial credit (`binary: true` pays only a full score). Example, chain_sum with
reference "-4": "<think>4-1-7</think> \\boxed{-4}" -> 1.0, "\\boxed{4}" -> 0.0,
"no box" -> 0.0 (unparsed: 1).

Model output is hostile: a scorer that raises on it scores 0 and is counted
(`scorer_errors`) instead of ending the run.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Dict, Optional

from rlreason.rewards.terms import REWARDS
from rlreason.rewards.math import last_boxed
from rlreason.types import RewardOutput, Rollout

EXTRACTORS = ("boxed", "answer_tag", "after_think")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)


def extract(text: str, how: str = "boxed") -> Optional[str]:
    """The model's final answer by `how` (boxed | answer_tag | after_think), or None.

    >>> extract("<think>a</think> \\\\boxed{7}"), extract("<answer> x </answer>", "answer_tag")
    ('7', 'x')
    """
    if how == "boxed":
        return last_boxed(text)
    if how == "answer_tag":
        found = _ANSWER_TAG.findall(text)
        return found[-1].strip() if found else None
    tail = text.rsplit("</think>", 1)[1] if "</think>" in text else None
    return tail.strip() if tail and tail.strip() else None


@lru_cache(maxsize=256)
def _scorer(name: str, config_json: str):
    """The generator instance (with the sample's config) whose score_answer scores answers."""
    import reasoning_gym

    return reasoning_gym.create_dataset(name, seed=0, size=1, **json.loads(config_json)).score_answer


def _entry_of(sample) -> Dict[str, Any]:
    if "rg_dataset" not in sample.meta or not isinstance(sample.answer, dict):
        raise ValueError(f"sample {sample.id!r} (task '{sample.task}') is not from the reasoning_gym task")
    return sample.answer


@REWARDS.register("reasoning_gym")
def reasoning_gym_reward(rollout: Rollout, extract_from: str = "boxed", binary: bool = False) -> RewardOutput:
    """reasoning-gym's own score_answer on the extracted answer (last \\boxed{} by default), in [0, 1]."""
    if extract_from not in EXTRACTORS:
        raise ValueError(f"extract_from must be one of {', '.join(EXTRACTORS)} (got {extract_from!r})")
    scores, unparsed, errors = [], 0, 0
    for i, completion in enumerate(rollout.completions):
        sample = rollout.sample_of(i)
        entry = _entry_of(sample)
        answer = extract(completion.text, extract_from)
        if answer is None:
            unparsed += 1
            scores.append(0.0)
            continue
        score_fn = _scorer(sample.meta["rg_dataset"], json.dumps(sample.meta.get("rg_config", {}), sort_keys=True))
        try:
            s = float(score_fn(answer, entry))
        except Exception:  # the scorer choked on model output: no credit, counted
            errors += 1
            s = 0.0
        scores.append((1.0 if s >= 1.0 - 1e-9 else 0.0) if binary else s)
    return RewardOutput(scores=scores, counts={"unparsed": unparsed, "scorer_errors": errors})
