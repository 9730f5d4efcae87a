"""Rule-checked reward terms and how they combine (DESIGN.md, "reward terms").

A reward term is a function `fn(rollout: Rollout, **params) -> RewardOutput`
registered in `REWARDS`: one float per completion (completion i answers
`rollout.sample_of(i)`) plus optional integer counters. The config lists terms
with a name, a weight and params; `compute_rewards` sums them:

>>> from rlreason.types import Completion, Rollout, Sample
>>> from types import SimpleNamespace as Term
>>> s = Sample(id="a0", task="arithmetic", prompt="12*11=", answer="132")
>>> c = Completion(text="<think>12*11</think> \\\\boxed{132}", token_ids=[], logprobs=[], finish_reason="stop")
>>> total, per_term, counts = compute_rewards(
...     Rollout([s], [c], 1), [Term(name="math_answer", weight=1.0, params={}),
...                            Term(name="format", weight=0.5, params={})])
>>> total, per_term, counts
([1.5], {'math_answer': [1.0], 'format': [1.0]}, {'math_answer/unparsed': 0, 'math_answer/timeouts': 0, 'math_answer/errors': 0})

A term that declares a `step` keyword (e.g. `kimi_length`, for its warm-up)
receives the trainer's current step from `compute_rewards(..., step=step)`,
and one that declares `is_correct` receives the verdicts of the correctness term
(`correctness_term`: the one rule for "correct"); neither is a user param.
Routing terms by task for a whole run is `rlreason.rewards.routing.Scorer`.

Rewards import only `rlreason.types`, `rlreason.registry` and their own
libraries (math_verify, sympy), never torch-heavy or trainer code.
"""
from rlreason.rewards.terms import (  # noqa: F401  (the public API of rewards/)
    CORRECT_PARAM, REWARDS, RUN_PARAMS, STEP_PARAM, RewardError, RewardFn, as_term, compute_rewards,
    correctness_term, score_each, takes, takes_step, validate_params,
)

# Importing the modules registers the built-in terms.
from rlreason.rewards import code, format, length, math  # noqa: E402,F401
from rlreason.rewards import reasoning_gym  # noqa: E402,F401

__all__ = ["REWARDS", "RewardError", "as_term", "compute_rewards", "correctness_term", "score_each",
           "validate_params"]
