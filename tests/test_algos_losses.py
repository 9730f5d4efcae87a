"""rlreason.algos.losses: ppo_clip (and dual clip), pg, gspo, kimi and sppo by hand, and their closed-form gradients.

Every expected number below is a literal worked out by hand in the comment next to it;
the code under test is only ever called, never re-implemented.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from rlreason.algos import LOSS_AGGS, BatchTotals
from rlreason.algos.aggregation import seq_mean_token_mean, seq_mean_token_sum
from rlreason.algos.losses import gspo, kimi, pg, ppo_clip, sppo


def cfg(**kw):
    base = dict(std_normalize=True, adv_eps=1e-6, clip_low=0.2, clip_high=0.2, kimi_tau=0.5, sppo_eta=1.5,
                gamma=1.0, lam=1.0)
    base.update(kw)
    return SimpleNamespace(**base)


NEW_LOSSES = ["pg", "gspo"]


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


# ----------------------------------------------------------------------------- ppo_clip dual clip


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


# ----------------------------------------------------------------------------- kimi and sppo


def _row(logratios, adv):
    """One sequence of len(logratios) loss tokens: logp = log-ratio (old = 0), adv broadcast."""
    logp = torch.tensor([logratios], requires_grad=True)
    return logp, torch.zeros_like(logp), torch.full_like(logp, adv), torch.ones_like(logp)


def test_kimi_by_hand():
    """A=1, s = .2 + .3 = .5, tau=.5: (1 - .25)^2 / (2*.5) = .5625 on both tokens;
    d/d logp_t = -(A - tau*s) = -.75 per token through s, summed over the 2 broadcast copies -> -1.5."""
    logp, old, adv, mask = _row([0.2, 0.3], 1.0)
    loss, stats = kimi(logp, old, adv, mask, cfg())
    torch.testing.assert_close(loss.detach(), torch.tensor([[0.5625, 0.5625]]))
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.5, -1.5]]))
    assert float(stats["policy/clipfrac"]) == 0.0


def test_sppo_by_hand():
    """P-1/2 = 1/3, eta=1.5 -> target .5; s = .1: (.1 - .5)^2 = .16 per token; d/d logp_t = 2*(-.4) = -.8 per copy."""
    logp, old, adv, mask = _row([0.04, 0.06], 1 / 3)
    loss, _ = sppo(logp, old, adv, mask, cfg())
    torch.testing.assert_close(loss.detach(), torch.tensor([[0.16, 0.16]]))
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.6, -1.6]]))


@pytest.mark.parametrize("name", ["kimi", "sppo"])
def test_squared_losses_have_the_papers_gradient_at_ratio_one(name):
    """Aggregated per sample (seq_mean_token_mean), at ratio 1 (old = logp):
    kimi: grad = -(1/n) sum_i A_i grad log pi(y_i)              (Kimi k1.5 §2.3.2, s_i = 0)
    sppo: grad = -(1/n) sum_i 2 eta (P_i - 1/2) grad log pi(y_i)  (SPPO §4, s_i = 0)
    so d loss / d logp[i, t] = -A_i / n (kimi) and -2 eta a_i / n (sppo) on every response token."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(4, 6, generator=g) - 2
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0.]])
    a = torch.tensor([0.5, -0.25, 1.0, -1.25])
    logp = base.clone().requires_grad_(True)
    fn = kimi if name == "kimi" else sppo
    c = cfg()
    loss_tok, _ = fn(logp, logp.detach(), a[:, None].expand(4, 6), mask, c)
    LOSS_AGGS.get("seq_mean_token_mean")(loss_tok, mask, BatchTotals.of(mask)).backward()
    coef = a if name == "kimi" else 2 * c.sppo_eta * a
    torch.testing.assert_close(logp.grad, -coef[:, None] / 4 * mask)
