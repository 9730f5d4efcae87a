"""rlreason.algos.advantages: each estimator by hand, declared traits, token-level rewards and GAE.

Every expected number below is a literal worked out by hand in the comment next to it;
the code under test is only ever called, never re-implemented.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rlreason.algos import ADVANTAGES
from rlreason.algos.advantages import (dr_grpo, gae, gae_returns, group_view, grpo, reinforce, reinforce_batch,
                                       reinforce_pp, reinforce_pp_baseline, reinforce_pp_seq, reward_to_go, rft, rloo,
                                       token_level_rewards, win_rate)


def cfg(**kw):
    """The algo settings the estimators read. std_ddof=0 (population std) here, so the hand-worked numbers below
    stay short; the tests of the default ddof=1 (Bessel) pass std_ddof=1."""
    base = dict(std_normalize=True, adv_eps=1e-6, std_ddof=0, clip_low=0.2, clip_high=0.2, kimi_tau=0.5, sppo_eta=1.5,
                gamma=1.0, lam=1.0, pass_k=1)
    base.update(kw)
    return SimpleNamespace(**base)


# 2 prompts x G=4 samples; completion i belongs to prompt i // 4.
REWARDS = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0])

NEW_ADVANTAGES = ["dr_grpo", "rloo", "reinforce", "reinforce_batch", "reinforce_pp", "reinforce_pp_seq",
                  "reinforce_pp_baseline", "rft"]


# ----------------------------------------------------------------------------- grpo


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


# ----------------------------------------------------------------------------- dr_grpo, rloo, reinforce variants, rft


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


def test_reinforce_pp_seq_by_hand():
    """Batch whitening of sequence rewards: mean 0.625, population var 0.625*0.375 = 0.234375, std 0.4841229."""
    adv = reinforce_pp_seq(REWARDS, 4, cfg())
    # r=1: 0.375/0.4841239 = sqrt(3/5) * (1 - 1e-6/0.4841) = 0.7745967 * (1 - 2.07e-6) = 0.7745951
    # r=0: -0.625/0.4841239 = -sqrt(5/3) * (1 - 2.07e-6) = -1.2909944 * (1 - 2.07e-6) = -1.2909917
    p, n = 0.7745951, -1.2909917
    expected = torch.tensor([p, n, n, p, p, p, p, n])
    torch.testing.assert_close(adv, expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("ddof", [0, 1])
def test_reinforce_pp_seq_is_whitened(ddof):
    """Batch mean 0 and std ~1 (with the configured ddof) on arbitrary rewards."""
    r = torch.randn(64, generator=torch.Generator().manual_seed(3)) * 5 + 2
    adv = reinforce_pp_seq(r, 4, cfg(std_ddof=ddof))
    assert abs(float(adv.mean())) < 1e-5
    assert abs(float(adv.std(correction=ddof)) - 1.0) < 1e-5


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
    # differs from reinforce_pp_seq: the baseline is per group, not per batch
    assert not torch.allclose(adv, reinforce_pp_seq(REWARDS, 4, cfg()))


def test_rft_by_hand():
    """1 where r > 0 (correct), else 0."""
    torch.testing.assert_close(rft(REWARDS, 4, cfg()), REWARDS)
    torch.testing.assert_close(rft(torch.tensor([1.0, 0.0, -1.0, 0.5]), 2, cfg()), torch.tensor([1.0, 0, 0, 1]))


def test_declared_traits():
    """Each estimator declares the rows its statistics span and the group size a baseline needs."""
    for est in (dr_grpo, rloo):
        assert (est.scope, est.min_group_size) == ("group", 2)
    assert (reinforce_pp_baseline.scope, reinforce_pp_baseline.min_group_size) == ("batch", 2)
    for est in (reinforce_batch, reinforce_pp, reinforce_pp_seq):
        assert (est.scope, est.min_group_size) == ("batch", 1)
    for est in (reinforce, rft):
        assert (est.scope, est.min_group_size) == ("sample", 1)
    assert not any(e.needs_critic for e in (dr_grpo, rloo, reinforce, reinforce_batch, reinforce_pp, rft))
    # token_level: advantages [N, T] from statistics over response tokens (torchrun refuses it at batch scope)
    assert reinforce_pp.token_level and gae.token_level
    assert not any(e.token_level for e in (grpo, dr_grpo, rloo, reinforce, reinforce_batch, reinforce_pp_seq, rft))


@pytest.mark.parametrize("name", NEW_ADVANTAGES)
def test_advantage_constant_groups_are_finite(name):
    r = torch.tensor([1.0, 1, 1, 1, 1, 1, 1, 1])
    mask = torch.ones(8, 3)
    adv = ADVANTAGES.get(name)(r, 4, cfg(), mask=mask)
    assert adv.shape == ((8, 3) if ADVANTAGES.get(name).token_level else (8,)) and torch.isfinite(adv).all()


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


# ----------------------------------------------------------------------------- std ddof (Bessel by default)


def test_grpo_bessel_std_by_hand():
    """std_ddof=1 (the default, as TRL and verl): the sample std of each group of 4.

    group 0: centred [.5,-.5,-.5,.5], var 4*.25/3 = 1/3, std 0.5773503 -> .5/0.5773513 = 0.8660239
    group 1: centred [.25,.25,.25,-.75], var (3*.0625 + .5625)/3 = .25, std .5 -> .25/.500001 = 0.4999990,
             -.75/.500001 = -1.4999970
    """
    adv = grpo(REWARDS, 4, cfg(std_ddof=1))
    a = 0.8660239
    expected = torch.tensor([a, -a, -a, a, 0.4999990, 0.4999990, 0.4999990, -1.4999970])
    torch.testing.assert_close(adv, expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("G", [2, 3, 5, 8])
def test_ddof_scales_grpo_by_sqrt_g_over_g_minus_1(G):
    """Population std = sqrt((G-1)/G) * sample std, so ddof 0 advantages are sqrt(G/(G-1)) times the ddof 1 ones
    (1.41x at G=2), with adv_eps=0."""
    r = torch.rand(4 * G, generator=torch.Generator().manual_seed(G))
    pop, bessel = grpo(r, G, cfg(adv_eps=0.0, std_ddof=0)), grpo(r, G, cfg(adv_eps=0.0, std_ddof=1))
    torch.testing.assert_close(pop, bessel * (G / (G - 1)) ** 0.5, atol=1e-5, rtol=1e-5)


def test_default_ddof_is_bessel_and_validated():
    from rlreason.config import AlgoConfig, ConfigError
    from rlreason.config_load import load_config

    assert AlgoConfig().std_ddof == 1
    torch.testing.assert_close(grpo(REWARDS, 4, AlgoConfig()), grpo(REWARDS, 4, cfg(std_ddof=1)))
    assert load_config(None, ["algo.std_ddof=0"]).algo.std_ddof == 0
    with pytest.raises(ConfigError, match=r"algo.std_ddof.*2 is not 0"):
        load_config(None, ["algo.std_ddof=2"])


# ----------------------------------------------------------------------------- all-equal groups, every group baseline

GROUP_BASELINES = sorted(n for n in ADVANTAGES if ADVANTAGES.get(n).min_group_size > 1)


def test_the_group_baselines_are_the_expected_ones():
    assert {"grpo", "dr_grpo", "rloo", "reinforce_pp_baseline", "win_rate"} <= set(GROUP_BASELINES)


@pytest.mark.parametrize("name", GROUP_BASELINES)
@pytest.mark.parametrize("value", [1.1, 10.1, 0.1, 1 / 3, 0.55])
def test_every_group_baseline_gives_all_equal_groups_exactly_zero(name, value):
    """float32 rewards such as 1.1 * G have a group mean an ulp off; every estimator with a group baseline must still
    give exactly 0.0 to such a group (both ddofs), while a group with signal between them keeps its advantages."""
    est = ADVANTAGES.get(name)
    for G in range(2, 17):
        r = torch.full((3 * G,), value, dtype=torch.float32)
        r[G:2 * G] = torch.arange(G, dtype=torch.float32)  # the middle group has signal
        for ddof in (0, 1):
            adv = est(r, G, cfg(std_ddof=ddof), mask=torch.ones(3 * G, 2)).reshape(3, G, -1)
            assert torch.equal(adv[0], torch.zeros_like(adv[0])) and torch.equal(adv[2], torch.zeros_like(adv[2])), \
                (name, G, ddof)
            assert adv[1].abs().sum() > 0


# ----------------------------------------------------------------------------- REINFORCE++ (token level)


def test_reward_to_go_by_hand():
    """gamma=.5, response at t=1..3 with token rewards [0, -.1, 1]: G_3 = 1, G_2 = -.1 + .5 = .4, G_1 = .2;
    a second row of 1 response token keeps its reward; prompt and padding positions are 0."""
    mask = torch.tensor([[0, 1, 1, 1.], [0, 1, 0, 0]])
    tok = torch.tensor([[0, 0, -0.1, 1.0], [0, 2.0, 0, 0]])
    torch.testing.assert_close(reward_to_go(tok, mask, 0.5), torch.tensor([[0, 0.2, 0.4, 1.0], [0, 2.0, 0, 0]]))
    torch.testing.assert_close(reward_to_go(tok, mask, 1.0), torch.tensor([[0, 0.9, 0.9, 1.0], [0, 2.0, 0, 0]]))


def test_reinforce_pp_whitens_over_tokens_by_hand():
    """gamma=1, no KL: rows of 2 and 1 response tokens with rewards 1 and 0 -> returns [1, 1 | 0] on 3 tokens:
    mean 2/3, std (ddof 1) sqrt((1/9 + 1/9 + 4/9)/2) = 0.5773503 -> (1 - 2/3)/0.5773513 = 0.5773493,
    -(2/3)/0.5773513 = -1.1546985. The longer response weighs twice in the statistics."""
    mask = torch.tensor([[0, 1, 1.], [0, 1, 0]])
    adv = reinforce_pp(torch.tensor([1.0, 0.0]), 1, cfg(std_ddof=1), mask=mask)
    torch.testing.assert_close(adv, torch.tensor([[0, 0.5773493, 0.5773493], [0, -1.1546985, 0]]), atol=1e-6, rtol=0)


def test_reinforce_pp_with_per_token_kl_and_discount_by_hand():
    """One row, per-token rewards [0, -.1, 1] (kl.where=reward), gamma=.5: returns [.2, .4, 1]: mean .5333333,
    population std .3399346 -> [-.9805778, -.3922311, 1.3728089] (ddof 0)."""
    mask = torch.tensor([[0, 1, 1, 1.]])
    tok = torch.tensor([[0, 0, -0.1, 1.0]])
    adv = reinforce_pp(tok, 1, cfg(gamma=0.5), mask=mask)
    torch.testing.assert_close(adv, torch.tensor([[0, -0.9805778, -0.3922311, 1.3728089]]), atol=2e-6, rtol=0)
    with pytest.raises(ValueError, match="mask"):
        reinforce_pp(torch.tensor([1.0]), 1, cfg())


def _verl_reinforce_pp(token_rewards: torch.Tensor, response_mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reference: verl's compute_reinforce_plus_plus_outcome_advantage, re-implemented from reading verl
    (verl/trainer/ppo/core_algos.py and verl/utils/torch_functional.py masked_whiten, 2026-01): response-only
    tensors; the running return restarts after the response; whitening with the masked mean and the
    Bessel-corrected masked variance, (x - mean) * rsqrt(var + 1e-8); then times the mask."""
    returns = torch.zeros_like(token_rewards)
    running = torch.zeros(token_rewards.shape[0])
    for t in range(token_rewards.shape[1] - 1, -1, -1):
        running = token_rewards[:, t] + gamma * running
        returns[:, t] = running
        running = running * response_mask[:, t]
    n = response_mask.sum()
    mu = (returns * response_mask).sum() / (n + 1e-8)
    var = (((returns - mu) ** 2) * response_mask).sum() / (n + 1e-8) * n / (n - 1)
    return (returns - mu) * torch.rsqrt(var + 1e-8) * response_mask


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforce_pp_equals_verls_formula(gamma):
    """Same scalar rewards, per-token KL penalties and responses: ours on [prompt + response] positions with
    std_ddof=1 and adv_eps=0 equals verl's formula on the response positions."""
    g = torch.Generator().manual_seed(7)
    N, P, T = 6, 3, 8
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    resp_mask = (torch.arange(T)[None, :] < lengths[:, None]).float()  # [N, T] response positions only
    scores = torch.randint(0, 2, (N,), generator=g).float()
    kl = 0.05 * torch.rand(N, T, generator=g) * resp_mask
    verl_rewards = torch.zeros(N, T)
    verl_rewards[torch.arange(N), lengths - 1] = scores
    verl_rewards = verl_rewards - kl
    ours_mask = torch.cat([torch.zeros(N, P), resp_mask], 1)
    ours_rewards = token_level_rewards(scores, ours_mask) - torch.cat([torch.zeros(N, P), kl], 1)  # as the trainer does
    ours = reinforce_pp(ours_rewards, 2, cfg(gamma=gamma, std_ddof=1, adv_eps=0.0), mask=ours_mask)
    ref = _verl_reinforce_pp(verl_rewards, resp_mask, gamma)
    assert torch.equal(ours[:, :P], torch.zeros(N, P))
    torch.testing.assert_close(ours[:, P:], ref, atol=1e-6, rtol=0)
