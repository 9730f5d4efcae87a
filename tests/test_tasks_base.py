"""rlreason.tasks.base: the base Task builds and checks every task's Params; the seeded epoch stream."""
from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from rlreason.tasks.arithmetic import Arithmetic, ArithmeticParams
from rlreason.tasks.base import Task, epochs


def test_base_builds_params_for_every_task():
    """Task builds `self.p = Params(**params)` and runs `check()` when Params has one; no Params, no params."""
    @dataclasses.dataclass
    class P:
        k: int = 1

    class WithParams(Task):
        name, Params = "with", P

    assert WithParams({"k": 3}).p == P(3) and WithParams().p == P(1)
    with pytest.raises(ValueError, match="no param 'j'; accepted: k"):
        WithParams.check_params({"j": 1})
    assert Task().p is None
    with pytest.raises(ValueError, match=r"accepted: \(none\)"):
        Task({"k": 1})
    assert Arithmetic({"max_digits": 3}).p == ArithmeticParams(max_digits=3)


@pytest.mark.parametrize("n, seed", [(1, 0), (5, 3), (164, 7)])
def test_epochs_is_the_seeded_shuffle_loop(n, seed):
    """`epochs` draws exactly what the tasks' own loops drew: one rng.shuffle of range(n) per epoch."""
    rng, want = random.Random(seed), []
    for _ in range(3):
        order = list(range(n))
        rng.shuffle(order)
        want += order
    items = [f"row{i}" for i in range(n)]
    assert list(itertools.islice(epochs(items, seed), 3 * n)) == [items[i] for i in want]
    with pytest.raises(ValueError, match="no items"):
        next(epochs([], seed))
