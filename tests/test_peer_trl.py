"""Peer equivalence with TRL 1.16's GRPOTrainer: same inputs, same loss and gradient (tests/trl_peer.py).

Each row pairs TRL's options with ours and runs both on one off-policy micro-batch (ratios away from 1,
so clipping engages), asserting the loss and d loss / d logits agree to 1e-6. Runs when the `trl` extra is
installed (`make test` installs it); skipped otherwise.
"""
from __future__ import annotations

import pytest
import torch

from trl_peer import compare, make_case, max_abs_diff

TOL = 1e-6
# Dr. GRPO's advantages (TRL's scale_rewards="none") on both sides keep the loss rows independent of the
# std convention; the advantage rows below compare that separately.
SAME_ADV = ["algo.advantage=dr_grpo"]

# id: (TRL GRPOConfig options, our overrides)
LOSS_ROWS = {
    # TRL "grpo": per-sequence token mean, then mean over sequences
    "grpo": (dict(loss_type="grpo", scale_rewards="none"), [*SAME_ADV, "algo.loss_agg=seq_mean_token_mean"]),
    # TRL "bnpo": token mean over the micro-batch (one micro-batch = the step: our token_mean)
    "bnpo": (dict(loss_type="bnpo", scale_rewards="none"), [*SAME_ADV, "algo.loss_agg=token_mean"]),
    # TRL "dapo": token sum over the generation batch's token count = our token_mean over the step
    "dapo": (dict(loss_type="dapo", scale_rewards="none"), [*SAME_ADV, "algo.loss_agg=token_mean"]),
    # TRL "dr_grpo": token sum / (sequences * max_completion_length) = our seq_sum_norm with norm_len = T
    "dr_grpo": (dict(loss_type="dr_grpo", scale_rewards="none"), [*SAME_ADV, "algo.loss_agg=seq_sum_norm"]),
    # beta > 0: k3 KL against the reference added to every token's loss (TRL without its default DeepSeek-V3.2
    # ratio weighting of the KL, use_bias_correction_kl=False; ours has no such weighting)
    "kl_k3": (dict(loss_type="dapo", scale_rewards="none", beta=0.04, use_bias_correction_kl=False),
              [*SAME_ADV, "algo.kl.coef=0.04", "algo.kl.estimator=k3", "algo.kl.where=loss"]),
    # clip-higher (DAPO): epsilon_high 0.28
    "clip_higher": (dict(loss_type="dapo", scale_rewards="none", epsilon=0.2, epsilon_high=0.28),
                    [*SAME_ADV, "algo.clip_low=0.2", "algo.clip_high=0.28"]),
    # GSPO: sequence-level ratio exp(mean_t log ratio), TRL's loss_type "grpo" as its docs recommend
    "gspo": (dict(loss_type="grpo", scale_rewards="none", importance_sampling_level="sequence", epsilon=0.1,
                  epsilon_high=0.15),
             [*SAME_ADV, "algo.loss=gspo", "algo.loss_agg=seq_mean_token_mean", "algo.clip_low=0.1",
              "algo.clip_high=0.15"]),
}


@pytest.fixture(autouse=True, scope="module")
def _trl():
    """Skip without the extra; imported when these tests run, not at collection (importing TRL imports vLLM)."""
    pytest.importorskip("trl")


@pytest.fixture(scope="module")
def off_policy_case():
    # rewards with signal in both groups and clipping on both sides of 1 (old log-probs moved by N(0, 0.3))
    return make_case(seed=0, rewards=[1, 0, 0, 1, 1, 1, 1, 0], off_policy=0.3)


@pytest.mark.parametrize("row", sorted(LOSS_ROWS))
def test_loss_and_gradient_match_trl(off_policy_case, row):
    trl_opts, ours = LOSS_ROWS[row]
    t, o = compare(off_policy_case, trl_opts, ours)
    assert max_abs_diff(t.advantages, o.advantages) == 0.0
    assert t.grad.abs().max() > 1e-3 and abs(t.loss) > 1e-3  # the case is not degenerate
    assert max_abs_diff(t.loss, o.loss) < TOL, (t.loss, o.loss)
    assert max_abs_diff(t.grad, o.grad) < TOL


def test_truncated_importance_sampling_matches_trl_token_truncate():
    """Our `tis_cap` is TRL's vLLM importance-sampling correction in mode token_truncate with C_max = cap:
    each token's loss times min(pi_trainer / pi_engine, cap). On-policy (the trainer's ratio is 1), with
    engine log-probs off by N(0, 0.5) so some ratios exceed the cap."""
    case = make_case(seed=1, rewards=[1, 0, 0, 1, 1, 1, 1, 0], engine_noise=0.5)
    trl_opts = dict(loss_type="dapo", scale_rewards="none", use_vllm=True, vllm_importance_sampling_correction=True,
                    vllm_importance_sampling_mode="token_truncate", vllm_importance_sampling_clip_max=1.5)
    t, o = compare(case, trl_opts, [*SAME_ADV, "algo.tis_cap=1.5"])
    assert (case.engine_shift.exp() * case.completion_mask > 1.5).any()  # the cap is active somewhere
    assert max_abs_diff(t.loss, o.loss) < TOL, (t.loss, o.loss)
    assert max_abs_diff(t.grad, o.grad) < TOL
    # and without our cap the gradient differs: the test can tell the two apart
    _, off = compare(case, trl_opts, SAME_ADV)
    assert max_abs_diff(t.grad, off.grad) > 1e-4


# ----------------------------------------------------------------------------- advantages

ADV_ROWS = {
    # TRL's group normalisation: (r - group mean) / (Bessel std + 1e-4) = our grpo with std_ddof=1 (the default)
    "group": (dict(scale_rewards="group"), ["algo.advantage=grpo", "algo.adv_eps=1e-4"]),
    # no scaling: r - group mean = our dr_grpo (and grpo with std_normalize=false)
    "none": (dict(scale_rewards="none"), ["algo.advantage=dr_grpo"]),
    "none_grpo": (dict(scale_rewards="none"), ["algo.advantage=grpo", "algo.std_normalize=false"]),
}


@pytest.mark.parametrize("row", sorted(ADV_ROWS))
@pytest.mark.parametrize("G", [2, 4, 8])
def test_advantages_match_trl(row, G):
    """Graded rewards (0, .5, 1, 1.5) in 3 groups of G."""
    trl_opts, ours = ADV_ROWS[row]
    case = make_case(seed=G, groups=3, G=G)
    t, o = compare(case, dict(loss_type="dapo", **trl_opts), ours)
    assert t.advantages.abs().sum() > 0
    assert max_abs_diff(t.advantages, o.advantages) < TOL


def test_trl_default_objective_matches_grpo_token_mean():
    """TRL's defaults (loss_type dapo, scale_rewards group, beta 0) end to end, off-policy: our grpo advantages with
    adv_eps=1e-4 (TRL's fixed epsilon), ppo_clip and token_mean give the same loss and gradient."""
    case = make_case(seed=3, rewards=[1, 0, 0.5, 1, 1, 1, 0, 0.5], off_policy=0.3)
    t, o = compare(case, dict(loss_type="dapo", scale_rewards="group"),
                   ["algo.advantage=grpo", "algo.adv_eps=1e-4", "algo.loss_agg=token_mean"])
    assert max_abs_diff(t.advantages, o.advantages) < TOL
    assert max_abs_diff(t.loss, o.loss) < TOL, (t.loss, o.loss)
    assert max_abs_diff(t.grad, o.grad) < TOL


def test_where_we_differ_by_choice_all_equal_groups():
    """A group whose float32 rewards are all 10.1 (G=8) has a mean an ulp off: TRL divides that ulp by (std + 1e-4)
    and hands its members advantages of about 0.01; ours gives exactly 0 (docs/algorithms.md). The group
    with signal agrees."""
    case = make_case(seed=4, rewards=[10.1] * 8 + [10.1, 0.1] * 4, groups=2, G=8)
    t, o = compare(case, dict(loss_type="dapo", scale_rewards="group"), ["algo.advantage=grpo", "algo.adv_eps=1e-4"])
    assert torch.equal(o.advantages[:8], torch.zeros(8))
    assert t.advantages[:8].abs().max() > 1e-3  # TRL's all-equal groups are not 0
    assert max_abs_diff(t.advantages[8:], o.advantages[8:]) < TOL
