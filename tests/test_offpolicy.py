"""Off-policy correction (`algo.is_mode`, rlreason/algos/offpolicy.py): each mode against numbers worked by hand,
against TRL 1.16's own code on the same inputs, through `update_policy`, and its config checks."""
from __future__ import annotations

import copy
import math
import re
import tempfile

import pytest
import torch

from rlreason.algos import IS_MODES
from rlreason.algos.offpolicy import importance_weights, resolve
from rlreason.batching import make_train_batch
from rlreason.config_load import load_config
from rlreason.errors import ConfigError
from rlreason.policy import token_logprobs
from rlreason.rollout.hf import HFEngine
from rlreason.tasks import TASKS
from rlreason.update import update_policy

# ----------------------------------------------------------------------------- by hand
# Four rows of 4 positions; ratios pi_old/pi_behaviour, mask 0 on padding and on row 1's prompt token, where the
# ratio (8, 100) must be ignored. Bounds [is_min, is_cap] = [0.5, 2]. Loss tokens: 3 + 3 + 2 + 3 = 11.
RHO = torch.tensor([[4.0, 0.25, 1.5, 8.0],
                    [100.0, 1.0, 0.4, 3.0],
                    [3.0, 1.5, 8.0, 8.0],
                    [0.6, 0.6, 0.6, 8.0]])
MASK = torch.tensor([[1.0, 1, 1, 0], [0, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
CAP, LO, TOKENS = 2.0, 0.5, 11.0
# sequence ratios (products over loss tokens): 4*.25*1.5 = 1.5; 1*.4*3 = 1.2; 3*1.5 = 4.5; .6^3 = .216
HAND = {
    # mode: (weight [4, 4], masked or capped loss tokens, mean weight over loss tokens)
    "token_truncate": ([[2, 0.5, 1.5, 1], [1, 1, 0.5, 2], [2, 1.5, 1, 1], [0.6, 0.6, 0.6, 1]],
                       [[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], (4 + 3.5 + 3.5 + 1.8) / TOKENS),
    "token_mask": ([[0, 0, 1.5, 1], [1, 1, 0, 0], [0, 1.5, 1, 1], [0.6, 0.6, 0.6, 1]],
                   [[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], (1.5 + 1 + 1.5 + 1.8) / TOKENS),
    "sequence_truncate": ([[1.5] * 4, [1.2] * 4, [2] * 4, [0.5] * 4],
                          [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], (4.5 + 3.6 + 4 + 1.5) / TOKENS),
    "sequence_mask": ([[1.5] * 4, [1.2] * 4, [0] * 4, [0] * 4],
                      [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], (4.5 + 3.6) / TOKENS),
}


def _algo(*extra):
    return load_config(None, list(extra)).algo


@pytest.mark.parametrize("mode", sorted(HAND))
def test_each_mode_against_hand_computed_weights(mode):
    weight, touched, mean = HAND[mode]
    w = importance_weights(_algo(f"algo.is_mode={mode}", f"algo.is_cap={CAP}", f"algo.is_min={LO}"), RHO.log(), MASK)
    torch.testing.assert_close(w.weight, torch.tensor(weight), rtol=1e-5, atol=1e-6)
    bound = IS_MODES.traits(mode)["bound"]
    hit, clean = (w.masked, w.capped) if bound == "mask" else (w.capped, w.masked)
    assert torch.equal(hit & MASK.bool(), torch.tensor(touched, dtype=torch.bool))
    assert not clean.any()  # a mask mode never caps, a truncate mode never masks
    shares = w.metric_shares(MASK, TOKENS)
    assert shares[f"policy/is_{'masked' if bound == 'mask' else 'capped'}_frac"] == pytest.approx(5 / TOKENS)
    assert shares[f"policy/is_{'capped' if bound == 'mask' else 'masked'}_frac"] == 0.0
    assert shares["policy/is_weight_mean"] == pytest.approx(mean, rel=1e-5)


def test_none_is_off_and_tis_cap_is_token_truncate():
    assert importance_weights(_algo(), RHO.log(), MASK) is None  # the default: no correction, no metrics
    unit = IS_MODES.get("none")(RHO.log(), MASK, CAP, LO)
    assert torch.equal(unit.weight, torch.ones(4, 4)) and not unit.masked.any() and not unit.capped.any()
    assert resolve(_algo("algo.tis_cap=2")) == ("token_truncate", 2.0, 0.0)
    old = importance_weights(_algo("algo.tis_cap=2"), RHO.log(), MASK).weight
    assert torch.equal(old, torch.exp(RHO.log() * MASK).clamp(max=2.0))  # today's tis_cap, bit for bit
    new = importance_weights(_algo("algo.is_mode=token_truncate", "algo.is_cap=2"), RHO.log(), MASK).weight
    assert torch.equal(old, new)


def test_nan_behaviour_logprob_counts_as_ratio_one_and_extremes_stay_finite():
    """A NaN behaviour log-prob (a token the engine could not score) gets ratio 1, as in TRL; a sequence whose
    log-ratio sum overflows exp is capped (truncate) or masked (mask), never inf or NaN."""
    lr = torch.tensor([[float("nan"), 0.0], [200.0, 200.0]])
    mask = torch.ones(2, 2)
    tok = IS_MODES.get("token_truncate")(lr, mask, 3.0, 0.0)
    assert tok.weight[0].tolist() == [1.0, 1.0]
    assert IS_MODES.get("sequence_truncate")(lr, mask, 3.0, 0.0).weight[1].tolist() == [3.0, 3.0]
    assert IS_MODES.get("sequence_mask")(lr, mask, 3.0, 0.0).weight[1].tolist() == [0.0, 0.0]


def test_modes_declare_their_traits():
    assert IS_MODES.names() == ["none", "sequence_mask", "sequence_truncate", "token_mask", "token_truncate"]
    for name in IS_MODES:
        level, bound = IS_MODES.traits(name)["level"], IS_MODES.traits(name)["bound"]
        assert (level is None) == (bound is None) == (name == "none") == IS_MODES.traits(name)["identity"]
        assert name == "none" or name == f"{level}_{bound}"


# ----------------------------------------------------------------------------- against TRL


@pytest.fixture(scope="module")
def trl_peer():
    pytest.importorskip("trl")
    import trl_peer

    return trl_peer


# TRL's vllm_importance_sampling_mode with (C_min, C_max) -> ours with (is_min, is_cap); C_min None = is_min 0
TRL_BOUNDS = [(0.7, 1.5), (None, 1.5)]


def _trl_ratio(trl_peer, case, mode, lo, cap):
    """TRL's importance-sampling ratio for `case`: `GRPOTrainer._generate_and_score_completions` run as in
    tests/trl_peer.py (fixed completions and engine log-probs), its output's `importance_sampling_ratio`."""
    from trl import GRPOConfig

    N = case.ids.shape[0]
    args = GRPOConfig(output_dir=tempfile.gettempdir(), use_cpu=True, report_to="none", num_generations=case.group_size,
                      per_device_train_batch_size=N, max_completion_length=case.T, beta=0.0, loss_type="dapo",
                      scale_rewards="none", use_vllm=True, vllm_importance_sampling_correction=True,
                      vllm_importance_sampling_mode=mode, vllm_importance_sampling_clip_min=lo,
                      vllm_importance_sampling_clip_max=cap)
    trainer = trl_peer._trl_trainer(case, trl_peer._TRLModel(case.logits.clone()), args)
    return trainer._generate_and_score_completions([{"prompt": "p"}] * N)["importance_sampling_ratio"]


def _trl_opts(mode, lo, cap):
    return dict(loss_type="dapo", scale_rewards="none", use_vllm=True, vllm_importance_sampling_correction=True,
                vllm_importance_sampling_mode=mode, vllm_importance_sampling_clip_min=lo,
                vllm_importance_sampling_clip_max=cap)


@pytest.mark.parametrize("lo, cap", TRL_BOUNDS)
@pytest.mark.parametrize("mode", sorted(HAND))
def test_weights_loss_and_gradient_equal_trls(trl_peer, mode, lo, cap):
    """Random logits, engine log-probs off by N(0, 0.5) per token, right-padded completions of 1..6 tokens:
    TRL's ratio tensor equals our weights on every loss token, and one update's loss and d loss / d logits
    equal TRL's `_compute_loss` to 1e-6; the bounds are active in the case (so the test can fail)."""
    case = trl_peer.make_case(seed=5, rewards=[1, 0, 0, 1, 1, 1, 1, 0], engine_noise=0.5)
    mask = case.completion_mask
    trl_w = _trl_ratio(trl_peer, case, mode, lo, cap).expand_as(mask)  # sequence modes: [N, 1]
    pre = trl_peer._pre_update_completion_logp(case)
    engine = pre - case.engine_shift * mask
    ours_algo = _algo(f"algo.is_mode={mode}", f"algo.is_cap={cap}", f"algo.is_min={lo or 0}")
    w = importance_weights(ours_algo, pre - engine, mask)
    assert (w.masked | w.capped)[mask.bool()].any() and not (w.masked | w.capped)[mask.bool()].all()
    torch.testing.assert_close(w.weight * mask, trl_w * mask, rtol=1e-6, atol=1e-7)
    ours = ["algo.advantage=dr_grpo", f"algo.is_mode={mode}", f"algo.is_cap={cap}", f"algo.is_min={lo or 0}"]
    t, o = trl_peer.compare(case, _trl_opts(mode, lo, cap), ours)
    assert trl_peer.max_abs_diff(t.loss, o.loss) < 1e-6, (t.loss, o.loss)
    assert trl_peer.max_abs_diff(t.grad, o.grad) < 1e-6
    _, plain = trl_peer.compare(case, _trl_opts(mode, lo, cap), ["algo.advantage=dr_grpo"])
    assert trl_peer.max_abs_diff(t.grad, plain.grad) > 1e-4  # without the correction the gradient differs


# ----------------------------------------------------------------------------- through update_policy


@pytest.fixture
def shifted(tiny):
    """A batch of the tiny model's samples and engine log-probs log(4) below the trainer's: ratio 4 on every token."""
    model, tok = tiny
    torch.manual_seed(0)
    rollout = HFEngine(model, tok).generate(TASKS.get("arithmetic")({}, seed=0).eval_samples(2), n=2,
                                            max_new_tokens=6)
    batch = make_train_batch(rollout, torch.tensor([1.0, -1.0, 1.0, -1.0]), tok.pad_token_id)
    with torch.no_grad():
        trainer_logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask)
    return model, batch, (trainer_logp - math.log(4.0)) * batch.loss_mask


def _step(model, batch, engine_logp, *extra):
    m = copy.deepcopy(model)
    cfg = load_config(None, ["train.max_grad_norm=0", "algo.loss=pg", "train.micro_batch_size=3", *extra])
    stats = update_policy(m, torch.optim.SGD(m.parameters(), lr=1.0), batch, cfg, engine_logp)
    return torch.cat([(p.detach() - q.detach()).flatten() for p, q in zip(m.parameters(), model.parameters())]), stats


def test_is_mode_reaches_the_loss(shifted):
    """Ratio 4 on every token. token_mask with cap 3 masks every token: zero policy gradient, the parameters do
    not move; sequence_truncate with cap 2 weights every token by 2 (sequence ratios 4^L > 2): exactly twice the
    uncorrected update; token_truncate by is_mode equals tis_cap bit for bit."""
    model, batch, engine_logp = shifted
    plain, stats = _step(model, batch, engine_logp)
    assert plain.abs().max() > 0 and not any(k.startswith("policy/is_") for k in stats)
    masked, stats = _step(model, batch, engine_logp, "algo.is_mode=token_mask", "algo.is_cap=3")
    assert masked.abs().max() == 0
    assert stats["policy/is_masked_frac"] == pytest.approx(1.0) and stats["policy/is_weight_mean"] == 0.0
    doubled, stats = _step(model, batch, engine_logp, "algo.is_mode=sequence_truncate", "algo.is_cap=2")
    torch.testing.assert_close(doubled, 2 * plain, rtol=1e-4, atol=1e-6)
    assert stats["policy/is_capped_frac"] == pytest.approx(1.0)
    assert stats["policy/is_weight_mean"] == pytest.approx(2.0)
    by_mode, _ = _step(model, batch, engine_logp, "algo.is_mode=token_truncate", "algo.is_cap=2")
    by_tis, stats = _step(model, batch, engine_logp, "algo.tis_cap=2")
    assert torch.equal(by_mode, by_tis) and stats["policy/is_capped_frac"] == pytest.approx(1.0)


def test_is_min_masks_stale_tokens_from_below(shifted):
    """Ratio 1/4 on every token (the behaviour policy liked the tokens more): token_mask with is_min 0.5 masks them
    all; sequence_mask with is_min 0.5 too; is_min 0.2 keeps the tokens and weights them by 1/4."""
    model, batch, engine_logp = shifted
    trainer_logp = engine_logp + math.log(4.0) * batch.loss_mask
    low = (trainer_logp + math.log(4.0)) * batch.loss_mask
    plain, _ = _step(model, batch, low)
    for mode in ("token_mask", "sequence_mask"):
        moved, _ = _step(model, batch, low, f"algo.is_mode={mode}", "algo.is_min=0.5")
        assert moved.abs().max() == 0
    quarter, stats = _step(model, batch, low, "algo.is_mode=token_mask", "algo.is_min=0.2")
    torch.testing.assert_close(quarter, plain / 4, rtol=1e-4, atol=1e-7)
    assert stats["policy/is_masked_frac"] == 0.0 and stats["policy/is_weight_mean"] == pytest.approx(0.25, rel=1e-5)


def test_a_registered_mode_is_a_config_name(shifted):
    """A mode registered from outside (a plugin) is chosen by name and reaches the loss: weight 1/2 everywhere
    halves the update."""
    from rlreason.algos.offpolicy import ISWeights

    @IS_MODES.register("_half", level="token", bound="truncate")
    def half(log_ratio, mask, cap, lo):
        no = torch.zeros(mask.shape, dtype=torch.bool)
        return ISWeights(torch.full(mask.shape, 0.5), no, no)
    try:
        model, batch, engine_logp = shifted
        plain, _ = _step(model, batch, engine_logp)
        halved, stats = _step(model, batch, engine_logp, "algo.is_mode=_half")
        torch.testing.assert_close(halved, plain / 2, rtol=1e-4, atol=1e-7)
        assert stats["policy/is_weight_mean"] == pytest.approx(0.5)
    finally:
        IS_MODES.unregister("_half")


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("override, message", [
    (["algo.is_mode=token_clip"], "algo.is_mode: unknown name 'token_clip'; known: none, sequence_mask"),
    (["algo.is_cap=0.5"], "algo.is_cap: must be >= 1"),
    (["algo.is_min=1.5"], "algo.is_min: must be in [0, 1]"),
    (["algo.is_min=-0.1"], "algo.is_min: must be in [0, 1]"),
    (["algo.tis_cap=2", "algo.is_mode=token_mask"], "algo.tis_cap: is the older spelling of is_mode=token_truncate"),
])
def test_bad_is_options_are_named(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, override)


def test_good_is_options_load():
    a = _algo("algo.is_mode=token_mask", "algo.is_cap=5", "algo.is_min=0.5")  # IcePop's bounds
    assert (a.is_mode, a.is_cap, a.is_min) == ("token_mask", 5.0, 0.5)
    assert resolve(_algo("algo.tis_cap=2", "algo.is_mode=none")) == ("token_truncate", 2.0, 0.0)
    unbounded = importance_weights(_algo("algo.is_mode=token_mask", "algo.is_cap=.inf", "algo.is_min=0.5"), RHO.log(), MASK)
    assert unbounded.weight[0].tolist() == pytest.approx([4.0, 0.0, 1.5, 1.0])  # only the lower bound masks
