"""rlreason.optim: the learning-rate schedule (warm-up, then constant, linear or cosine) and the LR SFT sets."""
import pytest

from rlreason.optim import lr_at, lr_factor


def test_lr_schedules():
    assert lr_factor(0, 4, 100, "constant") == 0.25
    assert lr_factor(50, 0, 100, "constant") == 1.0
    assert lr_factor(50, 0, 100, "linear") == pytest.approx(0.5)
    assert lr_factor(50, 0, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 0, 100, "cosine") == pytest.approx(0.0)
    assert lr_factor(0, 0, 100, "cosine") == pytest.approx(1.0)


def test_cosine_floor_and_the_lr_sft_sets():
    """SFT: warm-up 4 steps to 1e-3, then cosine to 10% of the peak over the remaining 100."""
    assert lr_factor(4, 4, 104, "cosine", floor=0.1) == pytest.approx(1.0)
    assert lr_factor(54, 4, 104, "cosine", floor=0.1) == pytest.approx(0.55)
    assert lr_factor(104, 4, 104, "cosine", floor=0.1) == pytest.approx(0.1)
    assert lr_at(0, 1e-3, 4, 104, "cosine", 0.1) == 1e-3 * 1 / 4  # warm-up in SFT's order: peak * (step+1) / warmup
    assert lr_at(54, 1e-3, 4, 104, "cosine", 0.1) == pytest.approx(0.55e-3)
