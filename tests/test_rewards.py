"""rlreason.rewards: compute_rewards (weighted sum, counts, errors naming term and sample), params, docs, doctests."""
from __future__ import annotations

from types import SimpleNamespace as Term

import pytest

from rlreason.registry import UnknownName
from rlreason.rewards import REWARDS, RewardError, compute_rewards, score_each, validate_params
from rlreason.types import Completion, RewardOutput, Rollout, Sample

B = "\\boxed"


def completion(text: str) -> Completion:
    return Completion(text=text, token_ids=[1, 2], logprobs=[-0.1, -0.2], finish_reason="stop")


def rollout(texts: list[str], answers: list[str], group_size: int = 1) -> Rollout:
    samples = [Sample(id=f"s{i}", task="arithmetic", prompt="q=", answer=a) for i, a in enumerate(answers)]
    return Rollout(samples, [completion(t) for t in texts], group_size)


GOOD = "<think>12*11 = 132</think> The answer is " + B + "{132}."


def test_compute_rewards_weighted_sum_and_counts():
    texts = [GOOD, B + "{131}", "<think>hm</think> no idea", "it is 132"]
    terms = [
        Term(name="math_answer", weight=1.0, params={"wrong": -1.0}),
        Term(name="format", weight=0.5, params=None),
    ]
    out = compute_rewards(rollout(texts, ["132", "132"], group_size=2), terms)
    total, per_term, counts = out.total, out.per_term, out.counts
    assert per_term == {"math_answer": [1.0, -1.0, -1.0, 1.0], "format": [1.0, 0.0, 0.0, 0.0]}
    assert total == [1.5, -1.0, -1.0, 1.0]
    assert counts == {"math_answer/unparsed": 1, "math_answer/timeouts": 0, "math_answer/errors": 0,
                      "math_answer/unchecked": 0}


def test_compute_rewards_unknown_term_lists_known():
    with pytest.raises(UnknownName, match="math_answer"):
        compute_rewards(rollout(["x"], ["1"]), [Term(name="math_anser", weight=1.0, params={})])


def test_compute_rewards_duplicate_term():
    term = Term(name="format", weight=1.0, params={})
    with pytest.raises(ValueError, match="listed twice"):
        compute_rewards(rollout(["x"], ["1"]), [term, term])


def _fail_on_sample_s1(r: Rollout) -> RewardOutput:
    def check(sample, completion):
        if sample.id == "s1":
            raise ZeroDivisionError("boom")
        return 1.0

    return RewardOutput(scores=score_each(r, check))


def _fail_plainly(r: Rollout) -> RewardOutput:
    raise KeyError("sample 's0' lacks tests")


def _wrong_length(r: Rollout) -> RewardOutput:
    return RewardOutput(scores=[1.0])


@pytest.fixture(scope="module")
def broken_terms():
    names = {"_test_fail_s1": _fail_on_sample_s1, "_test_fail_plain": _fail_plainly, "_test_len": _wrong_length}
    for name, fn in names.items():
        if name not in REWARDS:
            REWARDS.register(name)(fn)
    return names


def test_raising_term_names_term_and_sample(broken_terms):
    r = rollout(["a", "b", "c", "d"], ["1", "2"], group_size=2)
    with pytest.raises(RewardError) as info:
        compute_rewards(r, [Term(name="_test_fail_s1", weight=1.0, params={})])
    message = str(info.value)
    assert "_test_fail_s1" in message and "'s1'" in message and "completion 2" in message and "boom" in message
    assert (info.value.term, info.value.index, info.value.sample_id) == ("_test_fail_s1", 2, "s1")
    assert isinstance(info.value.__cause__.__cause__, ZeroDivisionError)

    with pytest.raises(RewardError, match="_test_fail_plain.*s0"):
        compute_rewards(r, [Term(name="_test_fail_plain", weight=1.0, params={})])
    with pytest.raises(RewardError, match="_test_len' returned 1 scores for 4"):
        compute_rewards(r, [Term(name="_test_len", weight=1.0, params={})])


def test_missing_answer_is_reported_with_sample_id():
    r = rollout([B + "{1}"], ["1"])
    r.samples[0].answer = None
    with pytest.raises(RewardError, match="math_answer.*'s0'"):
        compute_rewards(r, [Term(name="math_answer", weight=1.0, params={})])


def test_validate_params():
    validate_params("math_answer", {"correct": 1.0, "wrong": -0.5, "fallback": "none"})
    validate_params("format", {})
    validate_params("format", None)
    with pytest.raises(ValueError) as info:
        validate_params("format", {"scor": 1.0})
    assert str(info.value) == (
        "reward term 'format': unknown param 'scor'; accepted: think_open, think_close, require_boxed, score"
    )
    with pytest.raises(ValueError, match="unknown param 'rollout'"):
        validate_params("math_answer", {"rollout": None})
    with pytest.raises(UnknownName):
        validate_params("nope", {})


def test_builtin_terms_have_one_line_docs():
    for name in ("math_answer", "format"):
        assert name in REWARDS
        assert 10 < len(REWARDS.doc(name)) < 120


@pytest.mark.parametrize("module", ["rlreason.rewards", "rlreason.rewards.math", "rlreason.rewards.format",
                                    "rlreason.rewards.code", "rlreason.rewards.length",
                                    "rlreason.rewards.sandbox", "rlreason.rewards.pool"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
