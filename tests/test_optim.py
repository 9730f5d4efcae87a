"""rlreason.optim: the learning-rate schedule (warm-up, then constant, linear or cosine)."""
import pytest

from rlreason.optim import lr_factor


def test_lr_schedules():
    assert lr_factor(0, 4, 100, "constant") == 0.25
    assert lr_factor(50, 0, 100, "constant") == 1.0
    assert lr_factor(50, 0, 100, "linear") == pytest.approx(0.5)
    assert lr_factor(50, 0, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 0, 100, "cosine") == pytest.approx(0.0)
    assert lr_factor(0, 0, 100, "cosine") == pytest.approx(1.0)
