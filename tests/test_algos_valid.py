"""The valid-sample contract of every advantage estimator (rlreason/algos/advantages.py, `valid=`).

A sample whose reward could not be determined (valid False) gets advantage exactly 0 and is left out of
every statistic; a group left with fewer than min_group_size valid members gives 0 to all; an all-True
mask is bit-identical to None. The generic tests run over every registered estimator; the numbers in the
hand-worked ones are literals computed in the comment next to them.
"""
from __future__ import annotations

import pytest
import torch

from rlreason.algos import ADVANTAGES
from test_algos_advantages import cfg

ALL = sorted(ADVANTAGES.names())
G = 4


def _inputs(seed: int = 0, N: int = 12, T: int = 6, token_rewards: bool = False):
    """rewards [N] (or [N, T] with a per-token KL penalty), response mask [N, T] after 2 prompt tokens and
    values [N, T]."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T - 1, (N,), generator=g)
    mask = ((torch.arange(T)[None, :] >= 2) & (torch.arange(T)[None, :] < 2 + lengths[:, None])).float()
    rewards = torch.randint(0, 3, (N,), generator=g).float() * 0.5
    if token_rewards:
        from rlreason.algos.advantages import token_level_rewards

        rewards = token_level_rewards(rewards, mask) - 0.01 * torch.rand(N, T, generator=g) * mask
    return rewards, mask, torch.randn(N, T, generator=g) * mask


def _estimate(name, rewards, mask, values, valid, **kw):
    return ADVANTAGES.get(name).estimate(rewards, G, cfg(std_ddof=1, **kw), values=values, mask=mask, valid=valid)


def _same(a, b) -> bool:
    return (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("token_rewards", [False, True])
@pytest.mark.parametrize("name", ALL)
def test_all_true_is_bit_identical_to_none(name, token_rewards):
    rewards, mask, values = _inputs(token_rewards=token_rewards)
    a = _estimate(name, rewards, mask, values, None)
    b = _estimate(name, rewards, mask, values, torch.ones(12, dtype=torch.bool))
    assert torch.equal(a.advantages, b.advantages) and _same(a.returns, b.returns)


@pytest.mark.parametrize("name", ALL)
def test_invalid_rows_get_exactly_zero_and_their_rewards_do_not_matter(name):
    """Rows 2 (group 0) and 9 (group 2) invalid: their advantages (every token) are 0, and replacing their
    rewards by 100 or NaN changes no other row's advantage by a single bit."""
    rewards, mask, values = _inputs(seed=1)
    valid = torch.ones(12, dtype=torch.bool)
    valid[[2, 9]] = False
    base = _estimate(name, rewards, mask, values, valid)
    assert torch.equal(base.advantages[~valid], torch.zeros_like(base.advantages[~valid]))
    assert torch.isfinite(base.advantages).all() and base.advantages[valid].abs().sum() > 0
    for junk in (100.0, float("nan")):
        other = rewards.clone()
        other[~valid] = junk
        again = _estimate(name, other, mask, values, valid)
        assert torch.equal(again.advantages, base.advantages) and _same(again.returns, base.returns), junk
    if base.returns is not None:  # a critic's target for an invalid sample is its own value (A = 0)
        torch.testing.assert_close(base.returns[~valid], values[~valid] * mask[~valid])


@pytest.mark.parametrize("name", ALL)
def test_an_invalid_group_is_the_same_as_leaving_it_out(name):
    """Group 1 (rows 4..7) invalid: the other groups' advantages equal the estimator on the 8 rows without it."""
    rewards, mask, values = _inputs(seed=2)
    valid = torch.ones(12, dtype=torch.bool)
    valid[4:8] = False
    adv = _estimate(name, rewards, mask, values, valid).advantages
    alone = _estimate(name, rewards[valid], mask[valid], values[valid], None).advantages
    torch.testing.assert_close(adv[valid], alone, atol=1e-6, rtol=1e-6)
    assert torch.equal(adv[~valid], torch.zeros_like(adv[~valid]))


@pytest.mark.parametrize("name", sorted(n for n in ALL if ADVANTAGES.get(n).min_group_size > 1))
def test_a_group_below_min_group_size_gives_zero_to_all(name):
    """Group 0 keeps one valid member: below min_group_size (2), so all of it is 0, as if it were all invalid."""
    rewards, mask, values = _inputs(seed=3)
    rewards[:4] = torch.tensor([1.0, 0, 0, 0.5])  # a group with signal
    one = torch.ones(12, dtype=torch.bool)
    one[1:4] = False
    none = one.clone()
    none[0] = False
    a = _estimate(name, rewards, mask, values, one).advantages
    assert torch.equal(a[:4], torch.zeros_like(a[:4]))
    assert torch.equal(a, _estimate(name, rewards, mask, values, none).advantages)


@pytest.mark.parametrize("name", ALL)
def test_nothing_valid_gives_all_zeros(name):
    rewards, mask, values = _inputs(seed=4)
    est = _estimate(name, rewards, mask, values, torch.zeros(12, dtype=torch.bool))
    assert torch.equal(est.advantages, torch.zeros_like(est.advantages))
    assert est.returns is None or torch.isfinite(est.returns).all()


def test_valid_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="valid has 3 entries for 4 samples"):
        ADVANTAGES.get("grpo")(torch.ones(4), 4, cfg(), valid=torch.ones(3, dtype=torch.bool))


# ----------------------------------------------------------------------------- by hand: group [1, 0, X, 1], X invalid

R = torch.tensor([1.0, 0.0, 7.0, 1.0])  # X = 7: any value, it is left out
V = torch.tensor([True, True, False, True])


def _adv(name, **kw):
    return ADVANTAGES.get(name)(R, 4, cfg(**kw), valid=V)


def test_grpo_masked_by_hand():
    """Stats over [1, 0, 1]: mean 2/3, centred [1/3, -2/3, 1/3].
    ddof 1: var (1/9 + 4/9 + 1/9)/2 = 1/3, std 0.5773503 -> 0.5773493, -1.1546985.
    ddof 0: var (6/9)/3 = 2/9, std 0.4714045 -> 0.7071053, -1.4142106."""
    torch.testing.assert_close(_adv("grpo", std_ddof=1), torch.tensor([0.5773493, -1.1546985, 0, 0.5773493]),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(_adv("grpo", std_ddof=0), torch.tensor([0.7071053, -1.4142106, 0, 0.7071053]),
                               atol=1e-6, rtol=0)


def test_dr_grpo_rloo_and_win_rate_masked_by_hand():
    """dr_grpo: r - 2/3. rloo: baseline = mean of the other valid members: 1 - (0+1)/2 = .5, 0 - (1+1)/2 = -1.
    win_rate against the other valid members: a 1 beats the 0 and ties the other 1: (1 + .5)/2 - .5 = .25;
    the 0 loses both: 0 - .5 = -.5."""
    torch.testing.assert_close(_adv("dr_grpo"), torch.tensor([1 / 3, -2 / 3, 0, 1 / 3]))
    torch.testing.assert_close(_adv("rloo"), torch.tensor([0.5, -1.0, 0, 0.5]))
    torch.testing.assert_close(_adv("win_rate"), torch.tensor([0.25, -0.5, 0, 0.25]))


def test_all_equal_among_the_valid_members_is_exactly_zero():
    """[1.1, X, 1.1, 1.1] with X invalid carries no signal: exactly 0 for every group baseline."""
    r = torch.tensor([1.1, 0.0, 1.1, 1.1])
    v = torch.tensor([True, False, True, True])
    for name in ("grpo", "dr_grpo", "rloo", "win_rate", "reinforce_pp_baseline"):
        assert torch.equal(ADVANTAGES.get(name)(r, 4, cfg(std_ddof=1), valid=v), torch.zeros(4)), name


def test_batch_estimators_masked_by_hand():
    """Rewards [1,0,X,1 | 1,1,1,0], X invalid.
    reinforce_batch: valid mean 5/7 -> 1 - 5/7 = 2/7, 0 - 5/7 = -5/7.
    reinforce_pp_baseline (ddof 0): centred over the valid members [1/3,-2/3,_,1/3 | .25,.25,.25,-.75] (mean 0),
    population std over those 7: sqrt((6/9 + .75)/7) = 0.4498677 -> 0.7409569, -1.4819139, 0.5557177, -1.6671531."""
    r = torch.tensor([1.0, 0, 7, 1, 1, 1, 1, 0])
    v = torch.ones(8, dtype=torch.bool)
    v[2] = False
    rb = ADVANTAGES.get("reinforce_batch")(r, 4, cfg(), valid=v)
    torch.testing.assert_close(rb, torch.tensor([2 / 7, -5 / 7, 0, 2 / 7, 2 / 7, 2 / 7, 2 / 7, -5 / 7]))
    pb = ADVANTAGES.get("reinforce_pp_baseline")(r, 4, cfg(), valid=v)
    a, b, c, d = 0.7409569, -1.4819139, 0.5557177, -1.6671531
    torch.testing.assert_close(pb, torch.tensor([a, b, 0, a, c, c, c, d]), atol=2e-6, rtol=0)


def test_reinforce_pp_masked_by_hand():
    """Rows of 2 and 1 response tokens with rewards 1 and 0, plus an invalid row of 2 tokens (reward 5): the
    invalid row's tokens are 0 and outside the statistics, so the others are as without it:
    returns [1, 1 | 0], mean 2/3, std (ddof 1) 0.5773503 -> 0.5773493, -1.1546985."""
    mask = torch.tensor([[0, 1, 1.], [0, 1, 0], [0, 1, 1]])
    adv = ADVANTAGES.get("reinforce_pp")(torch.tensor([1.0, 0.0, 5.0]), 1, cfg(std_ddof=1), mask=mask,
                                         valid=torch.tensor([True, True, False]))
    expected = torch.tensor([[0, 0.5773493, 0.5773493], [0, -1.1546985, 0], [0, 0, 0]])
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)
