"""rlreason.tasks.reasoning_gym: generator params, deterministic deduplicated splits, params checks."""
from __future__ import annotations

import itertools

import pytest

from rlreason.tasks import TASKS

pytest.importorskip("reasoning_gym")


def test_generator_params_are_used():
    task = TASKS.get("reasoning_gym")({"dataset": "chain_sum", "config": {"min_terms": 4, "max_terms": 4,
                                                                         "min_digits": 1, "max_digits": 1}})
    for s in itertools.islice(task.train_samples(), 20):
        assert s.answer["metadata"]["num_terms"] == 4
        expr = s.answer["metadata"]["expression"]
        assert eval(expr) == int(s.meta["reference"])


def test_splits_deterministic_and_deduplicated():
    p = {"dataset": "leg_counting", "config": {"min_animals": 1, "max_animals": 1}, "heldout": 30}
    a = TASKS.get("reasoning_gym")(p, seed=0)
    held = [s.meta["question"] for s in a.eval_samples(30)]
    assert held == [s.meta["question"] for s in TASKS.get("reasoning_gym")(p, seed=5).eval_samples(30)]
    assert a.eval_samples(10) == a.eval_samples(30)[:10]
    train = [s.meta["question"] for s in itertools.islice(a.train_samples(), 300)]
    assert not set(train) & set(held)  # the tiny problem space repeats, yet held-out questions never train
    assert train == [s.meta["question"] for s in itertools.islice(TASKS.get("reasoning_gym")(p, seed=0).train_samples(), 300)]
    other = [s.meta["question"] for s in itertools.islice(TASKS.get("reasoning_gym")(p, seed=1).train_samples(), 300)]
    assert train != other


@pytest.mark.parametrize("params, needle", [
    ({}, "dataset is required"),
    ({"dataset": "chain_summ"}, "no dataset 'chain_summ'"),
    ({"dataset": "chain_sum", "config": {"bogus": 1}}, "bogus"),
    ({"dataset": "chain_sum", "config": {"min_terms": 5, "max_terms": 2}}, "max_terms"),
    ({"dataset": "chain_sum", "config": {"seed": 1}}, "config.seed"),
])
def test_params_rejected(params, needle):
    with pytest.raises(ValueError, match=needle):
        TASKS.get("reasoning_gym").check_params(params)
