"""Variant registry entries (advantages, aggregations, losses): hand-computed references and identities.

Every expected number is a literal worked out by hand in the comment next to it;
the code under test is only called, never re-implemented.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from _split_check import assert_split_invariant

from rlreason.algos import ADVANTAGES, LOSS_AGGS, LOSSES, BatchTotals
from rlreason.algos.advantages import (dr_grpo, reinforce, reinforce_batch, reinforce_pp, reinforce_pp_baseline,
                                       rft, rloo)
from rlreason.algos.aggregation import seq_mean_token_mean, seq_mean_token_sum, seq_sum_norm
from rlreason.algos.losses import gspo, pg, ppo_clip


def cfg(**kw):
    base = dict(std_normalize=True, adv_eps=1e-6, clip_low=0.2, clip_high=0.2)
    base.update(kw)
    return SimpleNamespace(**base)


# 2 prompts x G=4 samples; completion i belongs to prompt i // 4.
REWARDS = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0])

NEW_ADVANTAGES = ["dr_grpo", "rloo", "reinforce", "reinforce_batch", "reinforce_pp", "reinforce_pp_baseline", "rft"]
NEW_AGGS = ["seq_mean_token_mean", "seq_mean_token_sum", "seq_sum_norm"]
NEW_LOSSES = ["pg", "gspo"]


# ----------------------------------------------------------------------------- advantages


def test_dr_grpo_by_hand():
    """r - group mean, no std: group 0 mean .5, group 1 mean .75."""
    adv = dr_grpo(REWARDS, 4, cfg())
    expected = torch.tensor([0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75])
    assert adv.shape == (8,) and adv.dtype == torch.float32
    torch.testing.assert_close(adv, expected, atol=1e-7, rtol=0)


def test_rloo_by_hand():
    """r_i - mean of the other 3 rewards of the group."""
    adv = rloo(REWARDS, 4, cfg())
    expected = torch.tensor([
        2 / 3,   # 1 - (0+0+1)/3
        -2 / 3,  # 0 - (1+0+1)/3
        -2 / 3,  # 0 - (1+0+1)/3
        2 / 3,   # 1 - (1+0+0)/3
        1 / 3,   # 1 - (1+1+0)/3
        1 / 3,
        1 / 3,
        -1.0,    # 0 - (1+1+1)/3
    ])
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("G", [2, 3, 4])
def test_rloo_is_scaled_dr_grpo(G):
    """r_i - (S - r_i)/(G-1) = (G r_i - S)/(G-1) = G/(G-1) * (r_i - S/G)."""
    r = torch.rand(12, generator=torch.Generator().manual_seed(G))
    torch.testing.assert_close(rloo(r, G, cfg()), G / (G - 1) * dr_grpo(r, G, cfg()), atol=1e-6, rtol=1e-6)


def test_rloo_needs_two_per_group():
    with pytest.raises(ValueError, match="group_size >= 2"):
        rloo(REWARDS, 1, cfg())


def test_reinforce_and_batch_baseline_by_hand():
    """reinforce: A = r. reinforce_batch: r - batch mean (5/8 = 0.625)."""
    torch.testing.assert_close(reinforce(REWARDS, 4, cfg()), REWARDS)
    assert reinforce(torch.tensor([1, 0]), 2, cfg()).dtype == torch.float32  # ints are cast
    expected = torch.tensor([0.375, -0.625, -0.625, 0.375, 0.375, 0.375, 0.375, -0.625])
    torch.testing.assert_close(reinforce_batch(REWARDS, 4, cfg()), expected, atol=1e-7, rtol=0)


def test_reinforce_pp_by_hand():
    """Batch whitening: mean 0.625, population var 0.625*0.375 = 0.234375, std 0.4841229."""
    adv = reinforce_pp(REWARDS, 4, cfg())
    # r=1: 0.375/0.4841239 = sqrt(3/5) * (1 - 1e-6/0.4841) = 0.7745967 * (1 - 2.07e-6) = 0.7745951
    # r=0: -0.625/0.4841239 = -sqrt(5/3) * (1 - 2.07e-6) = -1.2909944 * (1 - 2.07e-6) = -1.2909917
    p, n = 0.7745951, -1.2909917
    expected = torch.tensor([p, n, n, p, p, p, p, n])
    torch.testing.assert_close(adv, expected, atol=2e-6, rtol=0)


def test_reinforce_pp_is_whitened():
    """Batch mean 0 and population std ~1 on arbitrary rewards."""
    r = torch.randn(64, generator=torch.Generator().manual_seed(3)) * 5 + 2
    adv = reinforce_pp(r, 4, cfg())
    assert abs(float(adv.mean())) < 1e-5
    assert abs(float(adv.std(unbiased=False)) - 1.0) < 1e-5


def test_reinforce_pp_baseline_by_hand():
    """Group-centred first ([.5,-.5,-.5,.5 | .25,.25,.25,-.75], mean 0), then batch-whitened.

    population var = (4*.25 + 3*.0625 + .5625)/8 = 1.75/8 = 0.21875, std 0.4677072.
    """
    adv = reinforce_pp_baseline(REWARDS, 4, cfg())
    # .5/.4677082 = 1.0690450*(1-2.14e-6) = 1.0690427 ; .25/.4677082 = 0.5345225 -> 0.5345214
    # -.75/.4677082 = -1.6035675 -> -1.6035641
    a, b, c = 1.0690427, 0.5345214, -1.6035641
    expected = torch.tensor([a, -a, -a, a, b, b, b, c])
    torch.testing.assert_close(adv, expected, atol=2e-6, rtol=0)
    # differs from plain reinforce_pp: the baseline is per group, not per batch
    assert not torch.allclose(adv, reinforce_pp(REWARDS, 4, cfg()))


def test_rft_by_hand():
    """1 where r > 0 (correct), else 0."""
    torch.testing.assert_close(rft(REWARDS, 4, cfg()), REWARDS)
    torch.testing.assert_close(rft(torch.tensor([1.0, 0.0, -1.0, 0.5]), 2, cfg()), torch.tensor([1.0, 0, 0, 1]))


def test_declared_traits():
    """Each estimator declares the rows its statistics span and the group size a baseline needs."""
    for est in (dr_grpo, rloo):
        assert (est.scope, est.min_group_size) == ("group", 2)
    assert (reinforce_pp_baseline.scope, reinforce_pp_baseline.min_group_size) == ("batch", 2)
    for est in (reinforce_batch, reinforce_pp):
        assert (est.scope, est.min_group_size) == ("batch", 1)
    for est in (reinforce, rft):
        assert (est.scope, est.min_group_size) == ("sample", 1)
    assert not any(e.needs_critic for e in (dr_grpo, rloo, reinforce, reinforce_batch, reinforce_pp, rft))


@pytest.mark.parametrize("name", NEW_ADVANTAGES)
def test_advantage_constant_groups_are_finite(name):
    r = torch.tensor([1.0, 1, 1, 1, 1, 1, 1, 1])
    adv = ADVANTAGES.get(name)(r, 4, cfg())
    assert adv.shape == (8,) and torch.isfinite(adv).all()


# ----------------------------------------------------------------------------- aggregation


LOSS = torch.tensor([[1.0, 2.0, 5.0], [3.0, 7.0, 9.0]])
MASK = torch.tensor([[1.0, 1, 0], [1, 0, 0]])


def test_aggregations_by_hand():
    t = BatchTotals.of(MASK, norm_len=4)
    # seq means 1.5 and 3 -> (1.5 + 3)/2 = 2.25
    assert float(seq_mean_token_mean(LOSS, MASK, t)) == pytest.approx(2.25)
    # seq sums 3 and 3 -> 6/2 = 3
    assert float(seq_mean_token_sum(LOSS, MASK, t)) == pytest.approx(3.0)
    # 6 / (2 seqs * 4) = 0.75
    assert float(seq_sum_norm(LOSS, MASK, t)) == pytest.approx(0.75)
    # step totals of 4 sequences: 4.5/4, 6/4, 6/(4*4)
    t4 = BatchTotals(num_tokens=3.0, num_seqs=4, norm_len=4.0)
    assert float(seq_mean_token_mean(LOSS, MASK, t4)) == pytest.approx(1.125)
    assert float(seq_mean_token_sum(LOSS, MASK, t4)) == pytest.approx(1.5)
    assert float(seq_sum_norm(LOSS, MASK, t4)) == pytest.approx(0.375)


def test_seq_mean_token_mean_empty_sequence_contributes_zero():
    """Row 1 has no loss tokens: its length clamps to 1 and its mean is 0 -> (1.5 + 0)/2 = 0.75."""
    mask = torch.tensor([[1.0, 1, 0], [0, 0, 0]])
    out = seq_mean_token_mean(LOSS, mask, BatchTotals.of(mask))
    assert torch.isfinite(out) and float(out) == pytest.approx(0.75)


@pytest.mark.parametrize("name", NEW_AGGS)
@pytest.mark.parametrize("splits", [[[0, 1, 2, 3, 4]], [[0], [1], [2], [3], [4]], [[0, 2], [1, 3, 4]],
                                    [[4], [3, 0, 1, 2]]])
def test_aggregation_micro_batch_invariance(name, splits):
    """Sum of per-micro-batch shares with whole-step totals == full value, and the same gradients."""
    agg = LOSS_AGGS.get(name)
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(5, 6, generator=g)
    mask = torch.tensor([[1.0, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0],
                         [0, 0, 0, 0, 0, 0]])
    totals = BatchTotals.of(mask, norm_len=8)

    grad = assert_split_invariant(agg, w0, mask, totals, splits)
    # hand gradients of w^2 aggregated: lengths [6,2,4,1,0->1], 5 sequences, norm_len 8
    lengths = torch.tensor([[6.0], [2.0], [4.0], [1.0], [1.0]])
    hand = {
        "seq_mean_token_mean": 2 * w0 * mask / (lengths * 5),
        "seq_mean_token_sum": 2 * w0 * mask / 5,
        "seq_sum_norm": 2 * w0 * mask / (5 * 8),
    }[name]
    torch.testing.assert_close(grad, hand)


# ----------------------------------------------------------------------------- pg


def test_pg_by_hand():
    """loss = -A * logp; grad = -A; stats: clipfrac 0, ratio sum over mask tokens."""
    logp = torch.tensor([[-0.5, -1.0, -2.0]], requires_grad=True)
    old = torch.tensor([[-0.5, -1.0 - math.log(2.0), -2.0]])  # ratios 1, 2, 1
    adv = torch.tensor([[2.0, -1.0, 0.5]])
    mask = torch.tensor([[1.0, 1, 0]])
    loss, stats = pg(logp, old, adv, mask, cfg())
    # -2*-0.5 = 1 ; 1*-1 = -1 ; -0.5*-2 = 1
    torch.testing.assert_close(loss.detach(), torch.tensor([[1.0, -1.0, 1.0]]))
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-2.0, 1.0, -0.5]]))
    assert float(stats["policy/clipfrac"]) == 0.0
    assert float(stats["policy/ratio_mean"]) == pytest.approx(3.0)  # 1 + 2 (third token masked)


def test_pg_gradient_equals_ppo_clip_at_ratio_one():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 5, generator=g) - 2.0
    adv = torch.randn(3, 5, generator=g) * 2
    mask = torch.ones(3, 5)
    grads = []
    for fn in (pg, ppo_clip):
        logp = base.clone().requires_grad_(True)
        loss, stats = fn(logp, logp.detach(), adv, mask, cfg())
        loss.sum().backward()
        grads.append(logp.grad)
        assert float(stats["policy/ratio_mean"]) == pytest.approx(15.0)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(grads[0], -adv)


# ----------------------------------------------------------------------------- ppo_clip dual clip


def _ppo(ratios, advs, **kw):
    logp = torch.tensor([[math.log(r) for r in ratios]], requires_grad=True)
    adv = torch.tensor([advs], dtype=torch.float32)
    loss, stats = ppo_clip(logp, torch.zeros_like(logp), adv, torch.ones_like(adv), cfg(**kw))
    loss.sum().backward()
    return loss.detach()[0], logp.grad[0], stats


def test_dual_clip_by_hand():
    """clip 0.2, clip_c 3: for A<0 loss = min(-min(rho*A, clip(rho)*A), -3*A)."""
    ratios = [5.0, 0.5, 1.5, 5.0, 1.0]
    advs = [-1.0, -1.0, -1.0, 1.0, -2.0]
    loss, grad, stats = _ppo(ratios, advs, clip_c=3.0)
    expected = [
        3.0,   # A=-1, rho=5:   ppo -min(-5, -1.2) = 5, bounded by -3*-1 = 3   (dual clip active)
        0.8,   # A=-1, rho=0.5: ppo -min(-.5, -.8) = 0.8 < 3                  (clip active)
        1.5,   # A=-1, rho=1.5: ppo 1.5 < 3
        -1.2,  # A=+1, rho=5:   -min(5, 1.2) = -1.2, dual clip never applies to A>0
        2.0,   # A=-2, rho=1:   ppo 2 < 6
    ]
    torch.testing.assert_close(loss, torch.tensor(expected), atol=1e-6, rtol=0)
    # gradient -A*rho where the unclipped term is active, 0 where a bound is active
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 1.5, 0.0, 2.0]), atol=1e-6, rtol=0)
    assert float(stats["policy/clipfrac"]) == 2.0  # tokens 1 and 3
    assert float(stats["policy/dual_clipfrac"]) == 1.0  # token 0


def test_dual_clip_off_and_positive_advantages_unchanged():
    """clip_c=0 (or a cfg without clip_c) is plain PPO; positive advantages never change."""
    loss_off, _, stats_off = _ppo([5.0], [-1.0], clip_c=0.0)
    assert float(loss_off[0]) == pytest.approx(5.0)  # unbounded: -min(-5, -1.2)
    assert "policy/dual_clipfrac" not in stats_off
    loss_old, _, _ = _ppo([5.0], [-1.0])  # SimpleNamespace without clip_c
    assert float(loss_old[0]) == pytest.approx(5.0)
    ratios, advs = [0.3, 0.9, 1.0, 1.3, 7.0], [0.5, 1.0, 2.0, 1.0, 3.0]
    on, g_on, _ = _ppo(ratios, advs, clip_c=3.0)
    off, g_off, _ = _ppo(ratios, advs, clip_c=0.0)
    assert torch.equal(on, off) and torch.equal(g_on, g_off)


# ----------------------------------------------------------------------------- gspo


def test_gspo_by_hand():
    """Row 0: log-ratios [.1,.3,(5 masked)] -> s = exp(.2) = 1.2214028, A=+1: clipped to 1.2.
    Row 1: log-ratios [.2,-.1,.05] -> s = exp(.05) = 1.0512711, A=-1: inside [.8,1.2]."""
    old = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    logp = (old + torch.tensor([[0.1, 0.3, 5.0], [0.2, -0.1, 0.05]])).requires_grad_(True)
    adv = torch.tensor([[1.0], [-1.0]]).expand(2, 3)
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 1]])
    loss, stats = gspo(logp, old, adv, mask, cfg())
    # row 0: -min(1.2214, 1.2) = -1.2 on every position ; row 1: -min(-1.0512711, -1.0512711) = 1.0512711
    expected = torch.tensor([[-1.2, -1.2, -1.2], [1.0512711, 1.0512711, 1.0512711]])
    torch.testing.assert_close(loss.detach(), expected, atol=1e-6, rtol=0)
    (loss * mask).sum().backward()
    # row 0 clipped: no gradient. row 1: each of 3 loss tokens gives -A*s/3 to each token -> 3 * s/3 = s
    s1 = 1.0512711
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 0.0, 0.0], [s1, s1, s1]]), atol=1e-6, rtol=0)
    assert float(stats["policy/clipfrac"]) == 2.0  # the 2 loss tokens of row 0
    # 2 * 1.2214028 + 3 * 1.0512711 = 2.4428056 + 3.1538133 = 5.5966189
    assert float(stats["policy/ratio_mean"]) == pytest.approx(5.5966189, abs=1e-5)


def test_gspo_at_ratio_one_matches_ppo_and_pg():
    """At s=1: value equals ppo_clip's; d loss[i,t'] / d logp[i,t] = -A_i / len_i for loss tokens t."""
    g = torch.Generator().manual_seed(2)
    base = torch.randn(3, 4, generator=g) - 2.0
    adv = (torch.tensor([[1.5], [-0.5], [2.0]])).expand(3, 4)
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])  # lengths 4, 2, 1

    logp = base.clone().requires_grad_(True)
    loss, stats = gspo(logp, logp.detach(), adv, mask, cfg())
    ref, _ = ppo_clip(base, base, adv, mask, cfg())
    torch.testing.assert_close(loss.detach(), ref)
    assert float(stats["policy/clipfrac"]) == 0.0

    # one loss entry, row 1 token 0: gradient -A/len = 0.5/2 = 0.25 on row 1's two loss tokens, 0 elsewhere
    (g10,) = torch.autograd.grad(loss[1, 0], logp, retain_graph=True)
    expected = torch.zeros(3, 4)
    expected[1, :2] = 0.25
    torch.testing.assert_close(g10, expected)
    # row 0 token 3: -1.5/4 = -0.375 on all 4 tokens
    (g03,) = torch.autograd.grad(loss[0, 3], logp, retain_graph=True)
    expected = torch.zeros(3, 4)
    expected[0] = -0.375
    torch.testing.assert_close(g03, expected)

    # aggregated over each sequence's loss tokens the len_i factors cancel: same gradient as pg
    for agg in (seq_mean_token_mean, seq_mean_token_sum):
        totals = BatchTotals.of(mask)
        lp_g = base.clone().requires_grad_(True)
        agg(gspo(lp_g, lp_g.detach(), adv, mask, cfg())[0], mask, totals).backward()
        lp_p = base.clone().requires_grad_(True)
        agg(pg(lp_p, lp_p.detach(), adv, mask, cfg())[0], mask, totals).backward()
        torch.testing.assert_close(lp_g.grad, lp_p.grad, atol=1e-6, rtol=0)


def test_gspo_small_clip_range_and_empty_sequence():
    """GSPO-sized clip (3e-4/4e-4): s = exp(0.01) = 1.01005 is clipped to 1.0004; an empty row has s = 1."""
    old = torch.zeros(2, 2)
    logp = torch.tensor([[0.01, 0.01], [3.0, -3.0]])
    adv = torch.ones(2, 2)
    mask = torch.tensor([[1.0, 1], [0, 0]])
    loss, stats = gspo(logp, old, adv, mask, cfg(clip_low=3e-4, clip_high=4e-4))
    torch.testing.assert_close(loss, torch.tensor([[-1.0004, -1.0004], [-1.0, -1.0]]), atol=1e-6, rtol=0)
    assert float(stats["policy/clipfrac"]) == 2.0


# ----------------------------------------------------------------------------- registries and docs


@pytest.mark.parametrize("reg,name", [(ADVANTAGES, n) for n in NEW_ADVANTAGES] + [(LOSS_AGGS, n) for n in NEW_AGGS]
                         + [(LOSSES, n) for n in NEW_LOSSES])
def test_new_entries_registered_with_paper_and_example(reg, name):
    fn = reg.get(name)
    first = reg.doc(name)
    assert "arXiv" in first or "Williams 1992" in first, first
    assert "Example" in fn.__doc__
