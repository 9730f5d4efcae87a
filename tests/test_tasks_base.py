"""rlreason.tasks.base: the base Task builds and checks every task's Params."""
from __future__ import annotations

import dataclasses

import pytest

from rlreason.tasks.arithmetic import Arithmetic, ArithmeticParams
from rlreason.tasks.base import Task


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
