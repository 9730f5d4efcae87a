"""rlreason.algos and rlreason.registry: hand-computed references, not the same formula run twice.

Every expected number below is a literal worked out by hand in the comment next
to it; the code under test is only ever called, never re-implemented.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from _split_check import assert_split_invariant

from rlreason.algos import ADVANTAGES, KL_ESTIMATORS, LOSS_AGGS, LOSSES, BatchTotals
from rlreason.algos.advantages import grpo, group_view
from rlreason.algos.aggregation import token_mean
from rlreason.algos.kl import k1, k2, k3
from rlreason.algos.losses import ppo_clip
from rlreason.registry import Registry, UnknownName


def cfg(**kw):
    base = dict(std_normalize=True, adv_eps=1e-6, clip_low=0.2, clip_high=0.2)
    base.update(kw)
    return SimpleNamespace(**base)


# 2 prompts x G=4 samples; completion i belongs to prompt i // 4.
REWARDS = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0])


# ----------------------------------------------------------------------------- advantages


def test_grpo_std_normalized_by_hand():
    """grpo = (r - group mean) / (population std + 1e-6), per group of 4."""
    adv = grpo(REWARDS, 4, cfg())
    # group 0: r=[1,0,0,1]: mean 0.5, centred [.5,-.5,-.5,.5], pop std sqrt(4*.25/4)=0.5
    #   -> +-0.5/0.500001 = +-0.999998
    # group 1: r=[1,1,1,0]: mean 0.75, centred [.25,.25,.25,-.75],
    #   pop var (3*.0625 + .5625)/4 = 0.1875, std 0.4330127
    #   -> 0.25/0.4330137 = 0.5773490, -0.75/0.4330137 = -1.7320468
    #      (1/sqrt3 and -sqrt3 shrunk by the factor 1 - 1e-6/0.433 = 1 - 2.31e-6)
    expected = torch.tensor([0.999998, -0.999998, -0.999998, 0.999998,
                             0.5773490, 0.5773490, 0.5773490, -1.7320468])
    assert adv.shape == (8,)
    assert adv.dtype == torch.float32
    torch.testing.assert_close(adv, expected, atol=2e-6, rtol=0)


def test_grpo_uses_population_not_sample_std():
    """With the sample std (ddof=1) group 0 would give 0.5/0.57735 = 0.866, not ~1."""
    adv = grpo(torch.tensor([1.0, 0, 0, 1]), 4, cfg())
    assert abs(float(adv[0]) - 1.0) < 1e-5
    assert abs(float(adv[0]) - 0.8660254) > 0.1


def test_grpo_mean_centring_only():
    """std_normalize=False: only r - group mean."""
    adv = grpo(REWARDS, 4, cfg(std_normalize=False))
    # group 0: 1-.5, 0-.5, 0-.5, 1-.5 ; group 1: 1-.75 (x3), 0-.75
    expected = torch.tensor([0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75])
    torch.testing.assert_close(adv, expected, atol=1e-7, rtol=0)


def test_grpo_eps_changes_the_denominator():
    """adv_eps is added to the std: with eps=0.5 group 0 gives 0.5/(0.5+0.5) = 0.5."""
    adv = grpo(torch.tensor([1.0, 0, 0, 1]), 4, cfg(adv_eps=0.5))
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5, -0.5, 0.5]))


@pytest.mark.parametrize("std_normalize", [True, False])
def test_grpo_constant_group_gives_zeros_not_nan(std_normalize):
    """A group whose rewards are all equal carries no signal: advantages 0 (std 0 + eps, no 0/0)."""
    r = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0, 0.3, 0.3, 0.3, 0.3])
    adv = grpo(r, 4, cfg(std_normalize=std_normalize))
    assert torch.isfinite(adv).all()
    assert torch.equal(adv, torch.zeros(12))


def test_grpo_integer_rewards_and_singleton_groups():
    """Integer rewards are cast to float; G=1 means every completion is its own group -> all 0."""
    adv = grpo(torch.tensor([1, 0, 0, 1]), 2, cfg(std_normalize=False))
    # groups [1,0] and [0,1]: means .5 -> [.5,-.5,-.5,.5]
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5, -0.5, 0.5]))
    assert torch.equal(grpo(REWARDS, 1, cfg()), torch.zeros(8))


def test_group_view_shape_and_error():
    """[N] -> [N/G, G] with contiguous groups; N not divisible by G raises ValueError naming both."""
    v = group_view(torch.arange(8.0), 4)
    assert v.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="6 rewards .* groups of 4"):
        group_view(torch.arange(6.0), 4)
    with pytest.raises(ValueError):
        grpo(torch.arange(7.0), 2, cfg())


# ----------------------------------------------------------------------------- ppo_clip


def _ppo(ratios, advs, mask=None, **kw):
    """Run ppo_clip on one row of tokens with the given ratios (old_logp = 0, logp = log ratio)."""
    logp = torch.tensor([[math.log(r) for r in ratios]], requires_grad=True)
    old = torch.zeros_like(logp)
    adv = torch.tensor([advs], dtype=torch.float32)
    mask = torch.ones_like(old) if mask is None else torch.tensor([mask], dtype=torch.float32)
    loss, stats = ppo_clip(logp, old, adv, mask, cfg(**kw))
    loss.sum().backward()
    return loss.detach()[0], logp.grad[0], stats


def test_ppo_clip_values_symmetric_clip():
    """clip 0.2/0.2: loss = -min(rho*A, clip(rho, .8, 1.2)*A) token by token."""
    ratios = [1.1, 1.5, 0.5, 1.5, 0.5, 1.0, 1.5]
    advs = [1.0, 1.0, 1.0, -1.0, -1.0, 3.0, 2.0]
    loss, grad, stats = _ppo(ratios, advs)
    expected = [
        -1.1,  # A=+1, rho=1.1 inside:   -min(1.1, 1.1)
        -1.2,  # A=+1, rho=1.5 above:    -min(1.5, 1.2)          (clipped active)
        -0.5,  # A=+1, rho=0.5 below:    -min(0.5, 0.8) = -0.5   (unclipped active)
        1.5,   # A=-1, rho=1.5 above:    -min(-1.5, -1.2) = 1.5  (unclipped active)
        0.8,   # A=-1, rho=0.5 below:    -min(-0.5, -0.8) = 0.8  (clipped active)
        -3.0,  # A=3,  rho=1:            -3
        -2.4,  # A=2,  rho=1.5:          -min(3.0, 2.4)           (clipped active)
    ]
    torch.testing.assert_close(loss, torch.tensor(expected), atol=1e-6, rtol=0)
    # d loss / d logp = -A*rho where the unclipped term is active, 0 where the clipped term is
    expected_grad = [-1.1, 0.0, -0.5, 1.5, 0.0, -3.0, 0.0]
    torch.testing.assert_close(grad, torch.tensor(expected_grad), atol=1e-6, rtol=0)
    # clipped term strictly active on tokens 1, 4, 6 -> 3 of 7 (a count; the trainer divides by tokens)
    assert float(stats["policy/clipfrac"]) == 3.0
    # ratio sum 1.1+1.5+0.5+1.5+0.5+1+1.5 = 7.6
    assert abs(float(stats["policy/ratio_mean"]) - 7.6) < 1e-5


def test_ppo_clip_asymmetric_clip_higher():
    """clip_low=0.2, clip_high=0.28 (DAPO clip-higher): range [0.8, 1.28]."""
    ratios = [1.25, 1.5, 0.78, 0.85, 1.25]
    advs = [1.0, 1.0, -1.0, -1.0, -1.0]
    loss, grad, stats = _ppo(ratios, advs, clip_low=0.2, clip_high=0.28)
    expected = [
        -1.25,  # A=+1, rho=1.25: inside [.8,1.28] -> -1.25 (a symmetric 0.2 clip would give -1.2)
        -1.28,  # A=+1, rho=1.5:  -min(1.5, 1.28)
        0.80,   # A=-1, rho=0.78: clip to 0.8 -> -min(-0.78, -0.8) = 0.8 (a 0.28 low clip would give 0.78)
        0.85,   # A=-1, rho=0.85: inside -> 0.85
        1.25,   # A=-1, rho=1.25: -min(-1.25, -1.25) = 1.25
    ]
    torch.testing.assert_close(loss, torch.tensor(expected), atol=1e-6, rtol=0)
    expected_grad = [-1.25, 0.0, 0.0, 0.85, 1.25]  # -A*rho where not clipped
    torch.testing.assert_close(grad, torch.tensor(expected_grad), atol=1e-6, rtol=0)
    assert float(stats["policy/clipfrac"]) == 2.0  # tokens 1 and 2


def test_ppo_clip_clipfrac_ignores_masked_tokens():
    """clipfrac and ratio_sum count only loss-mask tokens; the per-token loss itself is unmasked."""
    loss, _, stats = _ppo([1.5, 1.5, 1.5], [1.0, 1.0, 1.0], mask=[1, 0, 1])
    assert float(stats["policy/clipfrac"]) == 2.0  # all 3 clipped, one masked out
    assert abs(float(stats["policy/ratio_mean"]) - 3.0) < 1e-5  # 1.5 + 1.5
    torch.testing.assert_close(loss, torch.tensor([-1.2, -1.2, -1.2]))


def test_ppo_clip_zero_advantage_is_zero_loss_and_not_clipped():
    """A=0: loss 0, no gradient, and the clipped term is never *strictly* active."""
    loss, grad, stats = _ppo([1.5, 0.5], [0.0, 0.0])
    assert torch.equal(loss.abs(), torch.zeros(2))
    assert torch.equal(grad.abs(), torch.zeros(2))
    assert float(stats["policy/clipfrac"]) == 0.0


def test_ppo_clip_gradient_at_ratio_one_equals_vanilla_pg():
    """At rho=1 (old_logp = logp.detach()) grad of ppo_clip wrt logp == grad of -A*logp (REINFORCE)."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 5, generator=g) - 2.0  # log-probs
    adv = torch.randn(3, 5, generator=g) * 2  # mixed signs and magnitudes
    mask = torch.ones(3, 5)
    for c in (cfg(), cfg(clip_low=0.2, clip_high=0.28)):
        logp = base.clone().requires_grad_(True)
        loss, stats = ppo_clip(logp, logp.detach(), adv, mask, c)
        loss.sum().backward()
        pg_logp = base.clone().requires_grad_(True)
        (-adv * pg_logp).sum().backward()
        torch.testing.assert_close(logp.grad, pg_logp.grad, atol=1e-6, rtol=0)
        torch.testing.assert_close(logp.grad, -adv)  # both are -A
        assert float(stats["policy/clipfrac"]) == 0.0
        assert abs(float(stats["policy/ratio_mean"]) - 15.0) < 1e-5


# ----------------------------------------------------------------------------- aggregation


def test_batch_totals_of():
    """num_tokens = loss-mask sum (at least 1), num_seqs = rows."""
    t = BatchTotals.of(torch.tensor([[1.0, 1, 0], [1, 0, 0]]))
    assert t.num_tokens == 3.0 and t.num_seqs == 2
    t0 = BatchTotals.of(torch.zeros(4, 3))
    assert t0.num_tokens == 1.0 and t0.num_seqs == 4  # clamped: an empty mask does not divide by 0


def test_token_mean_by_hand():
    """Masked tokens drop out; the mean is over the step's loss tokens."""
    loss = torch.tensor([[1.0, 2.0, 5.0], [3.0, 7.0, 9.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0]])
    # (1 + 2 + 3) / 3 = 2   (not the per-row mean (1.5+3)/2 = 2.25)
    assert float(token_mean(loss, mask, BatchTotals.of(mask))) == pytest.approx(2.0)
    # with a step total of 6 tokens: 6 / 6 = 1
    assert float(token_mean(loss, mask, BatchTotals(num_tokens=6.0, num_seqs=4))) == pytest.approx(1.0)
    # empty mask: 0 / 1 = 0, finite
    assert float(token_mean(loss, torch.zeros(2, 3), BatchTotals.of(torch.zeros(2, 3)))) == 0.0


@pytest.mark.parametrize("splits", [[[0, 1, 2, 3]], [[0], [1], [2], [3]], [[0, 2], [1, 3]], [[3], [0, 1, 2]]])
def test_token_mean_micro_batch_invariance(splits):
    """Sum of per-micro-batch token_mean with whole-step totals == full-batch value, and same gradients."""
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(4, 6, generator=g)
    mask = torch.tensor([[1.0, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]])
    totals = BatchTotals.of(mask)  # 13 tokens

    grad = assert_split_invariant(token_mean, w0, mask, totals, splits)
    # hand check of the gradient: d/dw (w^2 * m / 13) = 2 w m / 13
    torch.testing.assert_close(grad, 2 * w0 * mask / 13.0)


# ----------------------------------------------------------------------------- KL estimators


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


# ----------------------------------------------------------------------------- registries


def test_registry_duplicate_registration_raises():
    reg = Registry("widget")

    @reg.register("a")
    def a():
        """Alpha entry.

        More text."""

    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a")(lambda: None)
    assert reg.get("a") is a  # the first registration is kept
    assert reg.names() == ["a"] and "a" in reg and list(reg) == ["a"]
    assert reg.doc("a") == "Alpha entry."


def test_registry_unknown_name_lists_known():
    reg = Registry("widget")
    reg.register("zeta")(1)
    reg.register("alpha")(2)
    with pytest.raises(UnknownName) as info:
        reg.get("beta")
    msg = str(info.value)
    assert msg == "unknown widget 'beta'; known: alpha, zeta"  # sorted, readable (not a KeyError repr)
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownName, match=r"known: \(none\)"):
        Registry("empty").get("x")


def test_builtin_registries():
    """The algos registries hold the entries in this package, and unknown names list them."""
    assert ADVANTAGES.get("grpo") is grpo
    assert LOSSES.get("ppo_clip") is ppo_clip
    assert LOSS_AGGS.get("token_mean") is token_mean
    assert {"k1", "k2", "k3"} <= set(KL_ESTIMATORS.names())
    assert (grpo.scope, grpo.min_group_size, grpo.needs_critic) == ("group", 2, False)
    with pytest.raises(UnknownName, match="grpo"):
        ADVANTAGES.get("grpoo")
    with pytest.raises(ValueError):
        ADVANTAGES.register("grpo")(grpo)
