"""Held-out evaluation: greedy accuracy, mean response length, truncation rate."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Dict, List, Union

from rlreason.rewards import REWARDS
from rlreason.types import Rollout, Sample


def _as_term(t: Any):
    return SimpleNamespace(**t) if isinstance(t, dict) else t


def correctness_term(terms: List[Any]):
    """The term that decides 'correct': math_answer when present, else the first term."""
    terms = [_as_term(t) for t in terms]
    return next((t for t in terms if t.name == "math_answer"), terms[0])


def _correct(rollout, terms: List[Any]) -> List[float]:
    term = correctness_term(terms)
    return REWARDS.get(term.name)(rollout, **dict(getattr(term, "params", None) or {})).scores


def evaluate(engine, samples: List[Sample], terms: Union[List[Any], Dict[str, List[Any]]],
             max_new_tokens: int) -> Dict[str, float]:
    """Greedy decode each sample once; accuracy = fraction whose correctness term scores > 0.

    `terms` is one list of reward terms, or {task: terms} routing each sample by `Sample.task`
    (a mixture); with several tasks, `eval/accuracy/<task>` is logged too.
    """
    if not samples:
        return {}
    rollout = engine.generate(samples, n=1, max_new_tokens=max_new_tokens, greedy=True)
    if isinstance(terms, dict):
        scores = [0.0] * len(samples)
        by_task: Dict[str, List[int]] = {}
        for i, s in enumerate(samples):
            by_task.setdefault(s.task, []).append(i)
        per_task = {}
        for task, idx in by_task.items():
            part = Rollout([samples[i] for i in idx], [rollout.completions[i] for i in idx], 1)
            for i, sc in zip(idx, _correct(part, terms[task])):
                scores[i] = sc
            per_task[f"eval/accuracy/{task}"] = sum(scores[i] > 0 for i in idx) / len(idx)
        extra = per_task if len(by_task) > 1 else {}
    else:
        scores, extra = _correct(rollout, terms), {}
    lengths = [len(c.token_ids) for c in rollout.completions]
    return {
        "eval/accuracy": sum(s > 0 for s in scores) / len(scores),
        "eval/response_length": sum(lengths) / len(lengths),
        "eval/truncated": sum(c.truncated for c in rollout.completions) / len(lengths),
        "eval/size": len(samples),
        **extra,
    }
