"""Reward terms: math_answer, format, compute_rewards and param validation."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace as Term

import pytest

from rlreason.registry import UnknownName
from rlreason.rewards import REWARDS, RewardError, compute_rewards, score_each, validate_params
from rlreason.rewards.math import extract_answer, is_equivalent, math_answer
from rlreason.types import Completion, RewardOutput, Rollout, Sample

B = "\\boxed"


def completion(text: str) -> Completion:
    return Completion(text=text, token_ids=[1, 2], logprobs=[-0.1, -0.2], finish_reason="stop")


def rollout(texts: list[str], answers: list[str], group_size: int = 1) -> Rollout:
    samples = [Sample(id=f"s{i}", task="arithmetic", prompt="q=", answer=a) for i, a in enumerate(answers)]
    return Rollout(samples, [completion(t) for t in texts], group_size)


# (completion text, gold answer, expected score)
MATH_CASES = [
    (B + "{132}", "132", 1.0),
    (B + "{12}", "13", 0.0),
    (B + "{-7}", "-7", 1.0),
    (B + "{-7}", "7", 0.0),
    (B + "{1,234}", "1234", 1.0),
    (B + "{1234}", "1,234", 1.0),
    (B + "{ 132 }", "132", 1.0),
    (B + "{007}", "7", 1.0),
    (B + "{\\frac{1}{2}}", "0.5", 1.0),
    (B + "{0.5}", "1/2", 1.0),
    (B + "{1/2}", "\\frac{1}{2}", 1.0),
    (B + "{\\frac34}", "0.75", 1.0),
    (B + "{\\dfrac{1}{3}}", "1/2", 0.0),
    (B + "{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", 1.0),
    (B + "{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{2}}{2}", 0.0),
    ("first " + B + "{5}, then " + B + "{7}", "7", 1.0),
    ("first " + B + "{5}, then " + B + "{7}", "5", 0.0),
    ("ok " + B + "{5} but cut off " + B + "{7", "5", 1.0),
    ("\\fbox{42}", "42", 1.0),
    (B + "{3.0}", "3", 1.0),
    (B + "{2.50}", "2.5", 1.0),
    (B + "{2.5}", "2.05", 0.0),
    (B + "{x+1}", "1+x", 1.0),
    (B + "{2\\sqrt{2}}", "\\sqrt{8}", 1.0),
    (B + "{\\pi}", "3", 0.0),
    (B + "{10^{3}}", "1000", 1.0),
    (B + "{5}", "$5$", 1.0),
    (B + "{132} and then some words 99", "132", 1.0),
    ("The answer is 132.", "132", 1.0),
    ("I first got 12, then 13", "13", 1.0),
    ("I first got 12, then 13", "12", 0.0),
    ("so 5-3 gives 2", "2", 1.0),
    ("the result is -15", "-15", 1.0),
    ("in total 1,234 apples", "1234", 1.0),
    ("half of it: 0.5", "\\frac{1}{2}", 1.0),
    ("No answer here.", "132", 0.0),
]


@pytest.mark.parametrize("text,gold,expected", MATH_CASES)
def test_math_answer_table(text, gold, expected):
    out = math_answer(rollout([text], [gold]))
    assert out.scores == [expected]


def test_math_answer_params_and_unparsed_count():
    texts = [B + "{132}", B + "{131}", "no number", "it is 132"]
    out = math_answer(rollout(texts, ["132", "132"], group_size=2), correct=2.0, wrong=-1.0)
    assert out.scores == [2.0, -1.0, -1.0, 2.0]
    assert out.counts == {"unparsed": 1, "timeouts": 0}
    out = math_answer(rollout(texts, ["132", "132"], group_size=2), fallback="none")
    assert out.scores == [1.0, 0.0, 0.0, 0.0]
    assert out.counts == {"unparsed": 2, "timeouts": 0}


def test_math_answer_bad_fallback():
    with pytest.raises(ValueError, match="fallback"):
        math_answer(rollout([B + "{1}"], ["1"]), fallback="first_number")


@pytest.mark.parametrize(
    "text,fallback,expected",
    [
        (B + "{\\frac{1}{2}}", "none", "\\frac{1}{2}"),
        (B + "{1} " + B + "{\\text{a}\\{b\\}}", "none", "\\text{a}\\{b\\}"),
        ("x = 1,234.5 m", "last_number", "1234.5"),
        ("value .5", "last_number", ".5"),
        ("from 3 to (4)-2", "last_number", "2"),
        ("nothing", "last_number", None),
        ("42", "none", None),
    ],
)
def test_extract_answer(text, fallback, expected):
    assert extract_answer(text, fallback) == expected


def test_is_equivalent():
    assert is_equivalent("1,234", "1234")
    assert is_equivalent("\\frac{1}{2}", "0.5")
    assert not is_equivalent("12", "13")
    assert not is_equivalent("", "13")
    assert not is_equivalent("1,2", "12")  # not a thousands separator


def test_math_answer_off_main_thread():
    texts = [B + "{\\frac{1}{2}}", B + "{0.25}", B + "{x^2+2x+1}"]
    result: dict = {}

    def work():
        try:
            result["out"] = math_answer(rollout(texts, ["1/2", "1/4", "(x+1)^2"]))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert "error" not in result, result.get("error")
    assert result["out"].scores == [1.0, 1.0, 1.0]


def test_math_answer_integer_fast_path():
    n = 1000
    texts = [f"<think>{i}*1</think> so {B}{{{i if i % 3 else i + 1}}}" for i in range(n)]
    r = rollout(texts, [str(i) for i in range(n)])
    start = time.perf_counter()
    out = math_answer(r)
    assert time.perf_counter() - start < 0.5  # ~0.005 s on one core; loose for busy machines
    assert sum(out.scores) == n - len(range(0, n, 3))


GOOD = "<think>12*11 = 132</think> The answer is " + B + "{132}."
FORMAT_CASES = [
    (GOOD, {}, 1.0),
    ("  \n" + GOOD, {}, 1.0),
    ("<think>12*11 = 132 " + B + "{132}", {}, 0.0),  # missing close tag
    ("<think>a</think><think>b</think> " + B + "{1}", {}, 0.0),  # two think blocks
    ("<think>12*11 = 132</think> 132", {}, 0.0),  # no boxed answer
    ("<think>12*11 = 132</think> 132", {"require_boxed": False}, 1.0),
    ("<think>  </think> " + B + "{132}", {}, 0.0),  # empty reasoning
    ("<think>12*11 = 132</think>  ", {"require_boxed": False}, 0.0),  # empty answer
    ("Sure! " + GOOD, {}, 0.0),  # open tag not first
    ("<think>x " + B + "{1}</think> done", {}, 0.0),  # box only inside the reasoning
    ("<think>x</think> " + B + "{1", {}, 0.0),  # unbalanced box
    ("12*11 = 132</think> " + B + "{132}", {"think_open": ""}, 1.0),  # prompt ends with <think>
    ("<r>12*11</r> " + B + "{132}", {"think_open": "<r>", "think_close": "</r>", "score": 0.5}, 0.5),
]


@pytest.mark.parametrize("text,params,expected", FORMAT_CASES)
def test_format_table(text, params, expected):
    out = REWARDS.get("format")(rollout([text], ["132"]), **params)
    assert out.scores == [expected]


def test_compute_rewards_weighted_sum_and_counts():
    texts = [GOOD, B + "{131}", "<think>hm</think> no idea", "it is 132"]
    terms = [
        Term(name="math_answer", weight=1.0, params={"wrong": -1.0}),
        Term(name="format", weight=0.5, params=None),
    ]
    total, per_term, counts = compute_rewards(rollout(texts, ["132", "132"], group_size=2), terms)
    assert per_term == {"math_answer": [1.0, -1.0, -1.0, 1.0], "format": [1.0, 0.0, 0.0, 0.0]}
    assert total == [1.5, -1.0, -1.0, 1.0]
    assert counts == {"math_answer/unparsed": 1, "math_answer/timeouts": 0}


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
