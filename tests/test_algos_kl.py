"""rlreason.algos.kl: the k1, k2, k3 estimators by hand, k3's sign and clamp.

Every expected number below is a literal worked out by hand in the comment next to it;
the code under test is only ever called, never re-implemented.
"""
from __future__ import annotations

import pytest
import torch

from rlreason.algos import KL_ESTIMATORS
from rlreason.algos.kl import k1, k2, k3


def test_kl_hand_values():
    """logp / ref pairs: (-1,-2), (-2,-1), (-1,-1), (-0.5, -3)."""
    logp = torch.tensor([-1.0, -2.0, -1.0, -0.5])
    ref = torch.tensor([-2.0, -1.0, -1.0, -3.0])
    # k1 = logp - ref: 1, -1, 0, 2.5
    torch.testing.assert_close(k1(logp, ref), torch.tensor([1.0, -1.0, 0.0, 2.5]))
    # k2 = (logp - ref)^2 / 2: 0.5, 0.5, 0, 3.125
    torch.testing.assert_close(k2(logp, ref), torch.tensor([0.5, 0.5, 0.0, 3.125]))
    # k3 = e^d - d - 1 with d = ref - logp:
    #   d=-1:   0.3678794 + 1 - 1 = 0.3678794
    #   d=+1:   2.7182818 - 1 - 1 = 0.7182818
    #   d=0:    1 - 0 - 1 = 0
    #   d=-2.5: 0.0820850 + 2.5 - 1 = 1.5820850
    torch.testing.assert_close(k3(logp, ref), torch.tensor([0.3678794, 0.7182818, 0.0, 1.5820850]),
                               atol=1e-6, rtol=0)


def test_k3_non_negative_on_a_grid():
    """k3 >= 0 everywhere (e^d >= 1 + d), with equality only at d = 0."""
    d = torch.linspace(-30, 30, 601)
    out = k3(torch.zeros_like(d), d)
    assert (out >= 0).all()
    assert (out[d.abs() > 0.05] > 0).all()  # near 0 float32 rounding may give exactly 0
    assert float(k3(torch.tensor(0.0), torch.tensor(0.0))) == 0.0


def test_k3_clamps_extreme_log_ratios_to_finite_values():
    """|ref - logp| is clamped to 20 before exp: values are finite and gradients finite (0 past the clamp)."""
    logp = torch.tensor([0.0, -100.0, -1e4], requires_grad=True)
    ref = torch.tensor([-100.0, 0.0, 0.0])
    out = k3(logp, ref)
    assert torch.isfinite(out).all()
    vals = out.detach()
    # d=-100 -> -20: e^-20 + 20 - 1 = 19.000000002
    assert float(vals[0]) == pytest.approx(19.0, rel=1e-6)
    # d=+100 -> +20: e^20 - 20 - 1 = 485165195.41 - 21 = 485165174.41
    assert float(vals[1]) == pytest.approx(485165174.41, rel=1e-6)
    assert float(vals[2]) == float(vals[1])  # d=1e4 also clamps to 20
    out.sum().backward()
    assert torch.isfinite(logp.grad).all()
    assert torch.equal(logp.grad, torch.zeros(3))  # all three are past the clamp


def test_kl_estimators_are_zero_when_policies_agree():
    logp = torch.tensor([[-0.3, -2.0, -7.5]])
    for name in ("k1", "k2", "k3"):
        assert torch.equal(KL_ESTIMATORS.get(name)(logp, logp.clone()).abs(), torch.zeros(1, 3))
