"""Peer equivalence with TRL 1.16 for the issue-26 objectives: CISPO (`loss_type="cispo"`) and the high-entropy
token gate (`top_entropy_quantile`), on one micro-batch with identical inputs (the harness: tests/trl_peer.py).

Loss and d loss / d logits agree to 1e-6. Off-policy cases (old log-probs moved away) make the importance
weights leave 1, so CISPO's clip engages. TRL takes the entropy threshold per micro-batch, ours over the whole
optimizer step: on one micro-batch (the case here) the two are the same. Skipped without the `trl` extra.
"""
from __future__ import annotations

import pytest

pytest.importorskip("trl")

import trl_peer  # noqa: E402
from trl_peer import compare, make_case, max_abs_diff, our_side  # noqa: E402

TOL = 1e-6
SAME_ADV = ["algo.advantage=dr_grpo"]  # TRL's scale_rewards="none": the same advantages on both sides

# id: (TRL GRPOConfig options, our overrides, our overrides without the option: a gradient that must differ)
ROWS = {
    # TRL: weight = min(rho, epsilon_high), no lower bound; ours: clip(rho, 1 - 1.0, 1 + 4.0), the defaults
    "cispo": (dict(loss_type="cispo", scale_rewards="none", epsilon_high=5.0),
              [*SAME_ADV, "algo.loss=cispo", "algo.loss_agg=token_mean"], ["algo.loss=cispo", "algo.cispo_eps_high=100"]),
    # a tight upper bound (DAPO's 0.28 above 1): many weights clipped
    "cispo_tight": (dict(loss_type="cispo", scale_rewards="none", epsilon_high=1.28),
                    [*SAME_ADV, "algo.loss=cispo", "algo.cispo_eps_high=0.28"], ["algo.loss=cispo"]),
    # the top 20% entropy tokens under PPO clip and TRL's token mean over the batch ("dapo")
    "top_entropy_0.2": (dict(loss_type="dapo", scale_rewards="none", top_entropy_quantile=0.2),
                        [*SAME_ADV, "algo.top_entropy_quantile=0.2"], []),
    # the gate on CISPO, with a KL term (not gated on either side)
    "cispo_top_entropy_kl": (dict(loss_type="cispo", scale_rewards="none", epsilon_high=5.0, top_entropy_quantile=0.5,
                                  beta=0.04, use_bias_correction_kl=False),
                             [*SAME_ADV, "algo.loss=cispo", "algo.top_entropy_quantile=0.5", "algo.kl.coef=0.04"],
                             ["algo.loss=cispo", "algo.kl.coef=0.04"]),
}


@pytest.fixture(autouse=True)
def _one_process_padding(monkeypatch):
    """TRL's get_high_entropy_mask pads each rank's entropies before gathering: in one process, nothing to pad."""
    monkeypatch.setattr(trl_peer._Accelerator, "pad_across_processes",
                        lambda self, x, dim=0, pad_index=0: x, raising=False)


@pytest.fixture(scope="module")
def case():
    # old log-probs moved by N(0, 1): of 38 ratios exp(shift), 3 are above CISPO's cap of 5 and 22 above 1.28
    return make_case(seed=1, groups=2, G=4, T=8, rewards=[1, 0, 0, 1, 1, 1, 1, 0], off_policy=1.0)


def test_the_case_engages_the_clip(case):
    ratios = case.old_shift.exp()[case.completion_mask.bool()]
    assert (ratios > 5).any() and (ratios > 1.28).sum() > 5


@pytest.mark.parametrize("row", sorted(ROWS))
def test_objective_matches_trl(case, row):
    trl_opts, ours, without = ROWS[row]
    t, o = compare(case, trl_opts, ours)
    assert max_abs_diff(t.advantages, o.advantages) == 0.0
    assert t.grad.abs().max() > 1e-3 and abs(t.loss) > 1e-3  # not degenerate
    diff_loss, diff_grad = max_abs_diff(t.loss, o.loss), max_abs_diff(t.grad, o.grad)
    print(f"{row}: max abs diff loss {diff_loss:.2e}, grad {diff_grad:.2e}")
    assert diff_loss < TOL, (t.loss, o.loss)
    assert diff_grad < TOL
    # the option is not a no-op: without it (or with the other bound / loss) our gradient differs from TRL's
    assert max_abs_diff(t.grad, our_side(case, [*SAME_ADV, *without]).grad) > 1e-4
