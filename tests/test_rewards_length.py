"""kimi_length (Kimi k1.5 §2.3.3) and overlong (DAPO eq. 13), worked by hand; the `step` plumbing."""
from __future__ import annotations

from types import SimpleNamespace as Term

import pytest

from rlreason.rewards import REWARDS, compute_rewards, validate_params
from rlreason.rewards.length import kimi_lambdas, kimi_length, overlong
from rlreason.types import Completion, Rollout, Sample


def rollout(lengths, correct, group_size):
    """Completions of `lengths` tokens; correct ones box 7, wrong ones box 8 (answer 7)."""
    n_prompts = len(lengths) // group_size
    samples = [Sample(id=f"p{i}", task="t", prompt="q", answer="7") for i in range(n_prompts)]
    completions = [Completion(f"\\boxed{{{7 if ok else 8}}}", list(range(n)), [0.0] * n, "stop")
                   for n, ok in zip(lengths, correct)]
    return Rollout(samples, completions, group_size)


def test_lambdas_by_hand():
    assert kimi_lambdas([10, 20, 30]) == [0.5, 0.0, -0.5]
    assert kimi_lambdas([4, 8]) == [0.5, -0.5]
    assert kimi_lambdas([5, 5, 5]) == [0.0, 0.0, 0.0]
    assert kimi_lambdas([1, 2, 5]) == [0.5, 0.25, -0.5]


def test_kimi_length_two_groups_by_hand():
    # group 1: lengths 10, 20, 30 with correctness yes, yes, no; group 2: 4, 8, 8 with no, yes, no
    r = rollout([10, 20, 30, 4, 8, 8], [True, True, False, False, True, False], group_size=3)
    out = kimi_length(r, correct_term="math_answer")
    assert out.scores == [0.5, 0.0, -0.5, 0.0, -0.5, -0.5]
    # correct answers get λ (may be positive); wrong ones min(0, λ): never a bonus for being short and wrong
    r = rollout([10, 20, 30], [False, False, True], group_size=3)
    assert kimi_length(r, correct_term="math_answer").scores == [0.0, 0.0, -0.5]


def test_kimi_length_equal_lengths_give_zero_and_tokens_not_characters():
    r = rollout([6, 6], [True, False], group_size=2)
    assert kimi_length(r, correct_term="math_answer").scores == [0.0, 0.0]
    r.completions[0].text = "\\boxed{7}" + " padding" * 100  # many more characters, same 6 tokens
    assert kimi_length(r, correct_term="math_answer").scores == [0.0, 0.0]


def test_kimi_length_warmup_and_step_from_compute_rewards():
    r = rollout([10, 30], [True, True], group_size=2)
    term = Term(name="kimi_length", weight=0.5, params={"warmup_steps": 5})
    judge = Term(name="math_answer", weight=0.0, params={})  # decides "correct", adds nothing to the total
    out = compute_rewards(r, [term, judge], step=4)
    assert out.per_term["kimi_length"] == [0.0, 0.0] and out.counts["kimi_length/active"] == 0
    out = compute_rewards(r, [term, judge], step=5)
    assert out.per_term["kimi_length"] == [0.5, -0.5] and out.total == [0.25, -0.25]
    assert out.counts["kimi_length/active"] == 1
    assert list(out.per_term) == ["kimi_length", "math_answer"]  # columns in config order
    assert compute_rewards(r, [Term(name="math_answer", weight=1.0, params={}), term], step=10).total == [1.25, 0.75]


def test_kimi_length_takes_the_runs_correctness_rule():
    """Without correct_term, "correct" is the verdict of the run's correctness term (here a throw-away term
    that is first and passes only completion 1), so kimi_length needs no math_answer."""
    from rlreason.types import RewardOutput

    REWARDS.register("_only_second")(lambda rollout: RewardOutput([0.0, 1.0]))
    try:
        r = rollout([10, 30], [True, True], group_size=2)  # math_answer would call both correct
        terms = [Term(name="_only_second", weight=1.0, params={}), Term(name="kimi_length", weight=1.0, params={})]
        assert compute_rewards(r, terms).per_term["kimi_length"] == [0.0, -0.5]  # the short one is "wrong": min(0, 0.5) = 0
        assert kimi_length(r, is_correct=[True, False]).scores == [0.5, -0.5]
        with pytest.raises(ValueError, match="decides correctness"):
            compute_rewards(r, [Term(name="kimi_length", weight=1.0, params={})])
        with pytest.raises(ValueError, match="no correctness verdicts"):
            kimi_length(r)
    finally:
        REWARDS.unregister("_only_second")


def test_kimi_length_correct_term_params():
    r = rollout([10, 30], [True, False], group_size=2)
    # with wrong=-1 the wrong answer still counts as wrong (score <= 0): same result
    assert kimi_length(r, correct_term="math_answer", correct_params={"wrong": -1.0}).scores == [0.5, -0.5]
    with pytest.raises(ValueError, match="itself"):
        kimi_length(r, correct_term="kimi_length")


def test_step_is_not_a_user_param():
    validate_params("kimi_length", {"warmup_steps": 10, "correct_term": "math_answer"})
    with pytest.raises(ValueError, match="'step' is set by the trainer"):
        validate_params("kimi_length", {"step": 3})
    with pytest.raises(ValueError, match="'is_correct' is set by the trainer"):
        validate_params("kimi_length", {"is_correct": [True]})
    with pytest.raises(ValueError, match="unknown param 'step'"):
        validate_params("format", {"step": 3})
    with pytest.raises(ValueError) as info:
        validate_params("kimi_length", {"warmup": 3})
    assert "accepted: correct_term, correct_params, warmup_steps" in str(info.value)


def test_overlong_by_hand():
    r = rollout([6, 7, 8, 10, 11], [True] * 5, group_size=1)
    out = overlong(r, max_len=10, buffer=4)
    assert out.scores == [0.0, -0.25, -0.5, -1.0, -1.0]
    assert out.counts == {"punished": 4}
    with pytest.raises(ValueError, match="buffer"):
        overlong(r, max_len=4, buffer=4)


def test_overlong_params_are_required():
    with pytest.raises(ValueError, match="missing required param 'max_len'"):
        validate_params("overlong", {"buffer": 4})
    validate_params("overlong", {"max_len": 64, "buffer": 16})


def test_all_terms_registered_with_one_line_docs():
    for name in ("math_answer", "format", "code_tests", "kimi_length", "overlong"):
        assert name in REWARDS and 10 < len(REWARDS.doc(name)) < 125, name
