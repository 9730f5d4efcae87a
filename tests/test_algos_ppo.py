"""win_rate, gae (+ critic, value loss), kimi and sppo: hand-computed references and closed-form gradients.

Each expected number is a literal worked out in the comment next to it.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rlreason.algos import ADVANTAGES, LOSS_AGGS, BatchTotals
from rlreason.algos.advantages import gae, gae_returns, grpo, rloo, token_level_rewards, win_rate
from rlreason.algos.losses import kimi, sppo
from rlreason.critic import ValueModel, value_loss


def cfg(**kw):
    base = dict(std_normalize=True, adv_eps=1e-6, clip_low=0.2, clip_high=0.2, kimi_tau=0.5, sppo_eta=1.5,
                gamma=1.0, lam=1.0)
    base.update(kw)
    return SimpleNamespace(**base)


REWARDS = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0])  # 2 prompts x G=4


# ----------------------------------------------------------------------------- win_rate


def test_win_rate_by_hand():
    """P_i over the 3 others (win 1, tie 1/2, loss 0), minus 1/2."""
    adv = win_rate(REWARDS, 4, cfg())
    expected = torch.tensor([
        1 / 3,   # r=1 vs 0,0,1: (1+1+.5)/3 = 5/6
        -1 / 3,  # r=0 vs 1,0,1: (0+.5+0)/3 = 1/6
        -1 / 3,
        1 / 3,
        1 / 6,   # r=1 vs 1,1,0: (.5+.5+1)/3 = 2/3
        1 / 6,
        1 / 6,
        -0.5,    # r=0 vs 1,1,1: 0
    ])
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)


def test_win_rate_graded_rewards_and_all_ties():
    """Rewards 3 > 2 > 1: P = 1, 1/2, 0 -> [.5, 0, -.5]; a constant group is all ties -> zeros."""
    torch.testing.assert_close(win_rate(torch.tensor([3.0, 2, 1]), 3, cfg()), torch.tensor([0.5, 0.0, -0.5]))
    assert torch.equal(win_rate(torch.ones(4), 4, cfg()), torch.zeros(4))
    with pytest.raises(ValueError, match="group_size >= 2"):
        win_rate(REWARDS, 1, cfg())


# ----------------------------------------------------------------------------- token-level rewards


def test_token_level_rewards_put_the_reward_on_the_last_response_token():
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 0.]])  # row 2: fully masked (e.g. overlong filtered)
    out = token_level_rewards(torch.tensor([2.0, -1.0, 5.0]), mask)
    torch.testing.assert_close(out, torch.tensor([[0, 0, 2.0, 0], [0, 0, 0, -1.0], [0, 0, 0, 0]]))


def test_sequence_estimators_sum_token_rewards():
    """[N, T] rewards (KL in the reward) are summed per sequence: r - coef * sum KL."""
    tok = torch.zeros(8, 3)
    tok[:, 2] = REWARDS
    tok[:, 0] = -0.25  # a per-token KL penalty on the first token of every sequence
    torch.testing.assert_close(rloo(tok, 4, cfg()), rloo(REWARDS - 0.25, 4, cfg()))
    torch.testing.assert_close(grpo(tok, 4, cfg()), grpo(REWARDS, 4, cfg()))  # a constant shift cancels


# ----------------------------------------------------------------------------- gae


def test_gae_returns_by_hand():
    """Row 0: prompt at t=0, response t=1..2 (r=1 on t=2); row 1: response t=1..3, r=0, padding none.

    gamma=1, lam=1:  row 0: V=[_, .5, .8] -> A_2 = 1 - .8 = .2, A_1 = 0 + .8 - .5 + .2 = .5; returns [1, 1].
    gamma=.5, lam=.5: row 0: A_2 = .2, A_1 = (0 + .5*.8 - .5) + .25*.2 = -.1 + .05 = -.05; returns A+V = [.45, 1].
    """
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1.]])
    values = torch.tensor([[9.0, 0.5, 0.8, 9.0], [9.0, 0.2, 0.4, 0.6]]) * mask  # garbage outside the mask is masked
    rew = token_level_rewards(torch.tensor([1.0, 0.0]), mask)
    adv, ret = gae_returns(rew, values, mask, 1.0, 1.0)
    # row 1: A_3 = 0 - .6 = -.6, A_2 = .6 - .4 - .6 = -.4, A_1 = .4 - .2 - .4 = -.2; returns all 0
    torch.testing.assert_close(adv, torch.tensor([[0, 0.5, 0.2, 0], [0, -0.2, -0.4, -0.6]]))
    torch.testing.assert_close(ret, torch.tensor([[0, 1.0, 1.0, 0], [0, 0, 0, 0.]]))
    adv, ret = gae_returns(rew, values, mask, 0.5, 0.5)
    torch.testing.assert_close(adv[0], torch.tensor([0, -0.05, 0.2, 0]))
    torch.testing.assert_close(ret[0], torch.tensor([0, 0.45, 1.0, 0]))


def test_gae_lambda_one_gamma_one_is_return_minus_value():
    """With gamma = lam = 1, A_t = (sum of later rewards) - V_t: the Monte-Carlo advantage."""
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(3, 5)
    values = torch.randn(3, 5, generator=g)
    r = torch.randn(3, generator=g)
    adv, _ = gae_returns(token_level_rewards(r, mask), values, mask, 1.0, 1.0)
    torch.testing.assert_close(adv, r[:, None] - values)


def test_gae_estimator_whitens_over_response_tokens():
    """Row 0 of the hand example alone: A = [.5, .2] on 2 tokens -> mean .35, std .15 -> [1, -1]."""
    mask = torch.tensor([[0, 1, 1, 0.]])
    values = torch.tensor([[0, 0.5, 0.8, 0]])
    adv = gae(torch.tensor([1.0]), 1, cfg(adv_eps=0.0), values=values, mask=mask)
    torch.testing.assert_close(adv, torch.tensor([[0, 1.0, -1.0, 0]]))
    assert ADVANTAGES.get("gae").needs_critic and ADVANTAGES.get("gae").scope == "batch"
    returns = ADVANTAGES.get("gae").estimate(torch.tensor([1.0]), 1, cfg(adv_eps=0.0), values=values, mask=mask).returns
    torch.testing.assert_close(returns, torch.tensor([[0, 1.0, 1.0, 0]]))  # A + V = [.5+.5, .2+.8]
    with pytest.raises(ValueError, match="values"):
        gae(torch.tensor([1.0]), 1, cfg())


def test_value_loss_by_hand():
    """0.5 * max((V-R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)."""
    v = torch.tensor([[1.5, 0.5, 1.05]], requires_grad=True)
    old = torch.tensor([[1.0, 1.0, 1.0]])
    ret = torch.tensor([[2.0, 0.0, 1.0]])
    mask = torch.ones(1, 3)
    loss, stats = value_loss(v, old, ret, mask, 0.2)
    # tok 0: unclipped (1.5-2)^2=.25, clipped V=1.2 -> (1.2-2)^2=.64 -> .32 (clipped active)
    # tok 1: unclipped (.5-0)^2=.25, clipped V=.8 -> .64 -> .32 (clipped active)
    # tok 2: unclipped .0025, clipped (inside the range) .0025 -> .00125
    torch.testing.assert_close(loss, torch.tensor([[0.32, 0.32, 0.00125]]))
    assert float(stats["critic/vf_clipfrac"]) == 2.0
    loss.sum().backward()
    torch.testing.assert_close(v.grad, torch.tensor([[0.0, 0.0, 0.05]]))  # clipped terms pass no gradient
    loss0, _ = value_loss(v, old, ret, mask, 0.0)
    torch.testing.assert_close(loss0, torch.tensor([[0.125, 0.125, 0.00125]]))


def test_value_model_is_causal_and_aligned_with_logprobs(tiny):
    """values[:, t] depends only on tokens < t (the state in which token t is chosen); values[:, 0] = 0."""
    model, _ = tiny
    torch.manual_seed(0)
    critic = ValueModel(model.base_model, model.config.hidden_size)
    torch.nn.init.normal_(critic.head.weight)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    attn = torch.ones_like(ids)
    with torch.no_grad():
        v = critic(ids, attn)
        v2 = critic(changed := ids.clone().index_fill_(1, torch.tensor([3]), 20), attn)
    assert v.shape == (1, 5) and float(v[0, 0]) == 0.0
    torch.testing.assert_close(v2[0, :4], v[0, :4])  # token 3 changed: values up to position 3 unchanged
    assert not torch.allclose(v2[0, 4], v[0, 4])


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
