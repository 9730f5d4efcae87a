"""Held-out evaluation: greedy accuracy, mean response length, truncation rate."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Dict, List

from rlreason.rewards import REWARDS
from rlreason.types import Sample


def _as_term(t: Any):
    return SimpleNamespace(**t) if isinstance(t, dict) else t


def correctness_term(terms: List[Any]):
    """The term that decides 'correct': math_answer when present, else the first term."""
    terms = [_as_term(t) for t in terms]
    return next((t for t in terms if t.name == "math_answer"), terms[0])


def evaluate(engine, samples: List[Sample], terms: List[Any], max_new_tokens: int) -> Dict[str, float]:
    """Greedy decode each sample once; accuracy = fraction whose correctness term scores > 0."""
    if not samples:
        return {}
    rollout = engine.generate(samples, n=1, max_new_tokens=max_new_tokens, greedy=True)
    term = correctness_term(terms)
    scores = REWARDS.get(term.name)(rollout, **dict(getattr(term, "params", None) or {})).scores
    lengths = [len(c.token_ids) for c in rollout.completions]
    return {
        "eval/accuracy": sum(s > 0 for s in scores) / len(scores),
        "eval/response_length": sum(lengths) / len(lengths),
        "eval/truncated": sum(c.truncated for c in rollout.completions) / len(lengths),
        "eval/size": len(samples),
    }
