"""Reward routing by task (`rewards/routing.py`): which terms each task gets, group-wise scoring, the
correctness rule, and the evaluation verdicts."""
from __future__ import annotations

import pytest

from rlreason.config_load import load_config
from rlreason.rewards import compute_rewards
from rlreason.rewards.routing import Scorer, terms_by_task
from rlreason.tasks.mixture import build_task
from rlreason.types import Completion, Rollout, Sample

MIX = ("data.mixture=[{task: arithmetic, weight: 3}, "
       "{task: jsonl, name: gsm, weight: 1, params: {path: tests/data/gsm8k_train.jsonl, preset: gsm8k, "
       "eval_path: tests/data/gsm8k_test.jsonl}}, "
       "{task: reasoning_gym, name: legs, weight: 1, eval_size: 2, params: {dataset: leg_counting}, "
       "rewards: [{name: reasoning_gym, weight: 2.0}]}]")


def comp(text):
    return Completion(text=text, token_ids=[1], logprobs=[0.0], finish_reason="stop")


def defaults_of(cfg):
    return {e.name: e.task.default_rewards for e in build_task(cfg.data, seed=0).entries}


def test_mixture_entries_get_their_own_terms_else_the_task_defaults():
    cfg = load_config(None, [MIX])
    routes = {k: [(t.name, t.weight) for t in v] for k, v in terms_by_task(cfg, defaults_of(cfg)).items()}
    assert routes == {"arithmetic": [("math_answer", 1.0), ("format", 0.1)],
                      "gsm": [("math_answer", 1.0), ("format", 0.1)], "legs": [("reasoning_gym", 2.0)]}


def test_single_task_uses_top_level_rewards_else_its_defaults():
    cfg = load_config(None, ["rewards=[{name: format, weight: 2.0}]"])
    routes = terms_by_task(cfg, defaults_of(cfg))
    assert [(k, [(t.name, t.weight) for t in v]) for k, v in routes.items()] == [("arithmetic", [("format", 2.0)])]
    cfg = load_config(None, [])
    assert [t.name for t in terms_by_task(cfg, defaults_of(cfg))["arithmetic"]] == ["math_answer", "format"]


def _two_task_rollout():
    samples = [Sample(id="a", task="m", prompt="1+1", answer="2"), Sample(id="b", task="f", prompt="x", answer="9"),
               Sample(id="c", task="m", prompt="2+2", answer="4")]
    texts = ["<think>a</think> \\boxed{2}", "\\boxed{3}", "<think>b</think> \\boxed{1}", "nothing",
             "\\boxed{4}", "<think>c</think> \\boxed{5}"]
    return samples, texts, Rollout(samples, [comp(t) for t in texts], 2, [[1], [2], [3]])


MATH = [{"name": "math_answer", "weight": 1.0}, {"name": "format", "weight": 0.5}]
FMT = [{"name": "format", "weight": 2.0}]


def test_scorer_routes_groups_and_keeps_order():
    """Prompts of two tasks interleaved, G=2: each group is scored by its task's own terms."""
    samples, texts, r = _two_task_rollout()
    scored = Scorer({"m": MATH, "f": FMT})(r, step=3)
    assert scored.total == [1.5, 0.0, 2.0, 0.0, 1.0, 0.5]
    assert scored.per_term["math_answer"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # 0 where the term does not apply
    assert scored.per_term["format"] == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    # correctness: math_answer for task m, format (its first and only term) for task f
    assert scored.correct == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert scored.group_accuracy() == [0.5, 0.5, 0.5]
    assert scored.counts == {"math_answer/unparsed": 0, "math_answer/timeouts": 0, "math_answer/errors": 0,
                             "math_answer/unchecked": 0}
    assert Scorer({"m": MATH, "f": FMT}).correct(r) == [True, False, True, False, True, False]
    # one task only: identical to compute_rewards on the whole rollout
    only = Rollout(samples[:1], [comp(t) for t in texts[:2]], 2)
    assert Scorer({"m": MATH})(only).total == compute_rewards(only, MATH).total
    with pytest.raises(ValueError, match="task 'f' have no reward terms"):
        Scorer({"m": MATH})(r)


def test_scorer_for_all_scores_any_task():
    _, _, r = _two_task_rollout()
    assert Scorer.for_all(FMT)(r).total == [2.0, 0.0, 2.0, 0.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="no reward terms"):
        Scorer({"m": []})


@pytest.fixture
def marks_term():
    """A throw-away term scoring 1.0 where its `marks` say ok, 0.0 elsewhere, and reporting the marks as outcomes."""
    from rlreason.rewards import REWARDS
    from rlreason.types import RewardOutput

    marks = ["ok", "timeout", "wrong", "error"]
    REWARDS.register("_marks")(lambda rollout: RewardOutput([1.0 if m == "ok" else 0.0 for m in marks],
                                                            outcomes=list(marks)))
    yield marks
    REWARDS.unregister("_marks")


def test_unchecked_samples_are_masked_by_default_and_kept_with_zero(marks_term):
    """A timeout or error outcome is no verdict: on_error=mask marks the sample not valid (the update leaves it
    out); zero keeps it with its 0. Either way the term's `unchecked` counter counts it."""
    term = [{"name": "_marks", "weight": 1.0}, {"name": "format", "weight": 0.5}]
    s = [Sample(id=f"q{i}", task="m", prompt="p", answer="1") for i in range(2)]
    r = Rollout(s, [comp("x")] * 4, 2, [[1], [2]])
    masked = Scorer({"m": term})(r)
    assert masked.valid == [True, False, True, False]
    assert masked.total == [1.0, 0.0, 0.0, 0.0] and masked.correct == [1.0, 0.0, 0.0, 0.0]
    assert masked.outcomes["_marks"] == marks_term and masked.outcomes["format"] == ["wrong"] * 4
    assert masked.counts["_marks/unchecked"] == 2 and "format/unchecked" not in masked.counts
    assert Scorer({"m": term}, on_error="zero")(r).valid == [True] * 4
    assert masked.select_groups([1]).valid == [True, False]
    with pytest.raises(ValueError, match="rewards_on_error must be one of mask, zero"):
        Scorer({"m": term}, on_error="drop")


@pytest.mark.parametrize("outcomes, problem", [(["ok"], "must be 2 of"), (["ok", "maybe"], "including 'maybe'")])
def test_a_term_with_bad_outcomes_is_a_reward_error(outcomes, problem):
    from rlreason.rewards import REWARDS, RewardError
    from rlreason.types import RewardOutput

    REWARDS.register("_bad_outcomes")(lambda rollout: RewardOutput([0.0, 0.0], outcomes=outcomes))
    try:
        r = Rollout([Sample(id="q", task="m", prompt="p", answer="1")], [comp("x")] * 2, 2, [[1]])
        with pytest.raises(RewardError, match=f"reward term '_bad_outcomes': .*{problem}"):
            compute_rewards(r, [{"name": "_bad_outcomes", "weight": 1.0}])
    finally:
        REWARDS.unregister("_bad_outcomes")
