"""The 2025 objectives (issue 26): the cispo loss, the pass_at_k advantage and the high-entropy token gate
(`algo.top_entropy_quantile`), by hand, against brute force where there is one, and through `update_policy`.

Every expected number below is a literal worked out by hand in the comment next to it (or, for pass@k, an
enumeration of every k-subset); the code under test is only called, never re-implemented.
"""
from __future__ import annotations

import copy
import itertools
import math
import re
from types import SimpleNamespace

import pytest
import torch

from rlreason.algos import ADVANTAGES, LOSSES
from rlreason.algos.entropy_gate import linear_quantile, top_entropy_gates
from rlreason.algos.losses import cispo, ppo_clip
from rlreason.algos.passk import binom_ratio, pass_at_k
from rlreason.config_load import load_config
from rlreason.errors import ConfigError
from rlreason.policy import token_logprobs
from rlreason.update import update_policy


def cfg(**kw):
    base = dict(std_normalize=True, adv_eps=0.0, clip_low=0.2, clip_high=0.2, cispo_eps_low=1.0,
                cispo_eps_high=4.0, pass_k=2)
    base.update(kw)
    return SimpleNamespace(**base)


# ----------------------------------------------------------------------------- cispo


def _cispo(ratios, advs, logps, mask=None, loss=cispo, **kw):
    """One row of tokens with the given ratios and log-probs (old_logp = logp - log ratio)."""
    logp = torch.tensor([logps], requires_grad=True)
    old = logp.detach() - torch.tensor([[math.log(r) for r in ratios]])
    adv = torch.tensor([advs])
    mask = torch.ones_like(old) if mask is None else torch.tensor([mask])
    out, stats = loss(logp, old, adv, mask, cfg(**kw))
    out.sum().backward()
    return out.detach()[0], logp.grad[0], stats


def test_cispo_default_bounds_by_hand():
    """Defaults (TRL's cispo with epsilon_high=5): weight = min(rho, 5), no lower bound; loss -w*A*logp."""
    loss, grad, stats = _cispo([6.0, 6.0, 0.5, 1.0], [1.0, -1.0, 1.0, 2.0], [-0.5, -0.5, -0.5, -1.0])
    expected = [
        2.5,   # rho 6 -> w 5: -5 * 1 * -0.5
        -2.5,  # rho 6 -> w 5, A=-1: -5 * -1 * -0.5
        0.25,  # rho 0.5 -> w 0.5 (no lower bound): -0.5 * 1 * -0.5
        2.0,   # rho 1 -> w 1: -1 * 2 * -1
    ]
    torch.testing.assert_close(loss, torch.tensor(expected), atol=1e-6, rtol=0)
    # d loss / d logp = -w * A: the weight carries no gradient of its own
    torch.testing.assert_close(grad, torch.tensor([-5.0, 5.0, -0.5, -2.0]), atol=1e-6, rtol=0)
    assert float(stats["policy/clipfrac"]) == 2.0  # the two rho=6 tokens
    assert float(stats["policy/ratio_mean"]) == pytest.approx(13.5, abs=1e-5)  # 6 + 6 + 0.5 + 1


def test_cispo_two_sided_bounds_and_mask():
    """cispo_eps_low 0.2, cispo_eps_high 0.28: weight clipped to [0.8, 1.28]; a masked token is not counted."""
    loss, grad, stats = _cispo([6.0, 0.5, 1.1, 6.0], [1.0, 1.0, -1.0, 1.0], [-0.5, -0.5, -2.0, -0.5],
                               mask=[1.0, 1.0, 1.0, 0.0], cispo_eps_low=0.2, cispo_eps_high=0.28)
    expected = [
        0.64,  # w 1.28: -1.28 * 1 * -0.5
        0.4,   # w 0.8:  -0.8 * 1 * -0.5
        -2.2,  # w 1.1 (inside): -1.1 * -1 * -2
        0.64,  # masked out, same value (the aggregation drops it)
    ]
    torch.testing.assert_close(loss, torch.tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(grad, torch.tensor([-1.28, -0.8, 1.1, -1.28]), atol=1e-6, rtol=0)
    assert float(stats["policy/clipfrac"]) == 2.0  # tokens 0 and 1; token 3 is outside the mask


def test_cispo_keeps_the_gradient_ppo_clip_drops():
    """rho 6, A=1: ppo_clip's clipped term is active and the token's gradient is 0; cispo's is -5."""
    _, g_ppo, _ = _cispo([6.0], [1.0], [-0.5], loss=ppo_clip)
    _, g_cispo, _ = _cispo([6.0], [1.0], [-0.5])
    assert float(g_ppo[0]) == 0.0
    assert float(g_cispo[0]) == pytest.approx(-5.0)


def test_cispo_at_ratio_one_is_policy_gradient():
    """With old = logp (one update per rollout) the weight is 1: the gradient is pg's -A."""
    torch.manual_seed(0)
    logp = (-torch.rand(3, 5)).requires_grad_()
    adv, mask = torch.randn(3, 5), torch.ones(3, 5)
    grads = []
    for name in ("cispo", "pg"):
        logp.grad = None
        LOSSES.get(name)(logp, logp.detach(), adv, mask, cfg())[0].sum().backward()
        grads.append(logp.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=0, rtol=0)
    torch.testing.assert_close(grads[0], -adv, atol=0, rtol=0)


# ----------------------------------------------------------------------------- pass@k


def _by_enumeration(correct, k):
    """Each sample's mean over the k-subsets holding it of (subset pass@k - mean) / population std."""
    n = len(correct)
    subsets = list(itertools.combinations(range(n), k))
    scores = [float(any(correct[i] for i in s)) for s in subsets]
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((x - mean) ** 2 for x in scores) / len(scores))
    if std == 0:
        return [0.0] * n
    out = []
    for i in range(n):
        mine = [(x - mean) / std for s, x in zip(subsets, scores) if i in s]
        out.append(sum(mine) / len(mine))
    return out


def test_pass_at_k_by_hand():
    """G=4, k=2. [1,0,0,0]: m = 1 - C(3,2)/C(4,2) = 1/2, s = 1/2 -> A+ = 1, A- = (1/2 - C(2,1)/C(3,1))/(1/2) = -1/3.
    [1,1,0,0]: m = 1 - 1/6 = 5/6, s = sqrt(5)/6 -> A+ = (1/6)/s = 1/sqrt(5), A- = (1/6 - 1/3)/s = -1/sqrt(5)."""
    r = torch.tensor([1.0, 0, 0, 0, 1, 1, 0, 0])
    a = ADVANTAGES.get("pass_at_k")(r, 4, cfg(pass_k=2))
    s5 = 1 / math.sqrt(5)
    torch.testing.assert_close(a, torch.tensor([1, -1 / 3, -1 / 3, -1 / 3, s5, s5, -s5, -s5]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("G", [3, 4, 6, 8])
def test_pass_at_k_equals_the_mean_over_every_k_subset(G):
    """The closed form against enumerating all C(G, k) subsets, for every k < G and every count of right samples."""
    for k in range(1, G):
        for right in range(G + 1):
            correct = [1.0] * right + [0.0] * (G - right)
            got = pass_at_k(torch.tensor(correct), G, cfg(pass_k=k))
            torch.testing.assert_close(got, torch.tensor(_by_enumeration(correct, k)), atol=1e-6, rtol=0,
                                       msg=f"G={G} k={k} right={right}")


def test_pass_at_1_is_grpo_on_binary_rewards():
    """pass@1's std is the exact one over the group's samples: GRPO with the population std (std_ddof 0)."""
    torch.manual_seed(0)
    r = (torch.rand(48) > 0.6).float()
    c = cfg(pass_k=1, adv_eps=1e-6, std_ddof=0)
    torch.testing.assert_close(ADVANTAGES.get("pass_at_k")(r, 8, c), ADVANTAGES.get("grpo")(r, 8, c), atol=1e-6,
                               rtol=0)


def test_pass_at_k_groups_without_signal_are_exactly_zero():
    """All right, all wrong, and fewer than k wrong (every k-subset holds a right sample: pass@k = 1 always)."""
    r = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0])
    a = pass_at_k(r, 4, cfg(pass_k=2, adv_eps=1e-6))
    assert torch.equal(a, torch.zeros(12))


def test_pass_at_k_non_binary_and_per_token_rewards():
    """Right means reward > 0: [0.5, -1, 0, 0] counts as [1, 0, 0, 0]; [N, T] rewards are summed first."""
    a = pass_at_k(torch.tensor([0.5, -1.0, 0.0, 0.0]), 4, cfg(pass_k=2))
    torch.testing.assert_close(a, torch.tensor([1, -1 / 3, -1 / 3, -1 / 3]), atol=1e-6, rtol=0)
    per_token = torch.tensor([[0.0, 1.0], [0.5, -0.5], [0.0, 0.0], [-1.0, 0.0]])  # sums [1, 0, 0, -1]
    torch.testing.assert_close(pass_at_k(per_token, 4, cfg(pass_k=2)), a, atol=1e-6, rtol=0)


def test_pass_at_k_invalid_samples_are_left_out():
    """G=6, k=2: samples 4 and 5 could not be checked -> 0, and the group is [1,0,0,0] (A+ 1, A- -1/3) whatever
    their rewards say. Group 2 keeps only 2 valid samples (< k+1): no k-subset to compare, all 0."""
    r = torch.tensor([1.0, 0, 0, 0, 1, 1] + [1, 0, 1, 0, 1, 0])
    valid = torch.tensor([True] * 4 + [False] * 2 + [True, True] + [False] * 4)
    a = pass_at_k.fn(r, 6, cfg(pass_k=2), valid=valid)
    torch.testing.assert_close(a[:6], torch.tensor([1, -1 / 3, -1 / 3, -1 / 3, 0, 0]), atol=1e-6, rtol=0)
    assert torch.equal(a[6:], torch.zeros(6))
    everyone = pass_at_k.fn(r, 6, cfg(pass_k=2), valid=torch.ones(12, dtype=torch.bool))
    torch.testing.assert_close(everyone, pass_at_k.fn(r, 6, cfg(pass_k=2)), atol=0, rtol=0)  # valid=None: all


def test_binom_ratio_by_hand():
    a, b = torch.tensor([2, 3, 1, -1]), torch.tensor([4, 4, 4, 3])
    # C(2,2)/C(4,2) = 1/6; C(3,2)/C(4,2) = 3/6; C(1,2) = 0; a = -1 (no wrong sample) -> 0
    torch.testing.assert_close(binom_ratio(a, b, 2), torch.tensor([1 / 6, 0.5, 0.0, 0.0], dtype=torch.float64))
    assert torch.equal(binom_ratio(a, b, 0), torch.ones(4, dtype=torch.float64))


def test_pass_at_k_refuses_k_of_the_whole_group():
    with pytest.raises(ValueError, match="1 <= pass_k < group_size"):
        pass_at_k(torch.zeros(8), 4, cfg(pass_k=4))


@pytest.mark.parametrize("override, message", [
    (["algo.pass_k=0"], "algo.pass_k: must be >= 1"),
    (["algo.advantage=pass_at_k", "algo.pass_k=8", "rollout.group_size=8"], "algo.pass_k: must be < rollout.group_size (8)"),
    (["algo.top_entropy_quantile=1.5"], "algo.top_entropy_quantile: must be in [0, 1]"),
    (["algo.cispo_eps_low=1.5"], "algo.cispo_eps_low: must be in [0, 1]"),
    (["algo.cispo_eps_high=-1"], "algo.cispo_eps_high: must be >= 0"),
])
def test_bad_objective_options_are_named(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, override)


# ----------------------------------------------------------------------------- high-entropy token gate


def test_linear_quantile_by_hand_and_equals_torch_quantile():
    assert float(linear_quantile(torch.tensor([3.0, 1.0, 2.0, 4.0]), 0.5)) == 2.5  # rank 1.5 between 2 and 3
    torch.manual_seed(0)
    for n in (1, 2, 7, 1000):
        x = torch.rand(n)
        for q in (0.0, 0.2, 0.5, 0.8, 1.0):
            assert torch.equal(linear_quantile(x, 1 - q), torch.quantile(x, 1 - q)), (n, q)


def test_top_entropy_gates_by_hand():
    """Entropies [0.1, 0.5, 0.9, 0.3] + a masked 5.0, q=0.5: the 0.5 quantile of [.1, .3, .5, .9] is 0.4."""
    ent = torch.tensor([[0.1, 0.5, 0.9, 0.3, 5.0]])
    mask = torch.tensor([[1.0, 1, 1, 1, 0]])
    gates, threshold = top_entropy_gates([ent], [mask], 0.5)
    assert float(threshold) == pytest.approx(0.4)
    assert gates[0].tolist() == [[False, True, True, False, False]]
    gates, _ = top_entropy_gates([ent], [torch.zeros_like(mask)], 0.5)  # no loss token: nothing gets a gradient
    assert not gates[0].any()


def test_top_entropy_gates_span_the_whole_step():
    """Split into micro-batches (one of them narrower, as a token-budget split makes them), the threshold and
    the gates equal those of the step in one piece."""
    torch.manual_seed(0)
    ent, mask = torch.rand(6, 8), (torch.rand(6, 8) > 0.3).float()
    mask[2:5, 6:] = 0  # rows 2-4 are shorter: their micro-batch is 6 wide
    whole, t_whole = top_entropy_gates([ent], [mask], 0.2)
    parts, t_parts = top_entropy_gates([ent[:2], ent[2:5, :6], ent[5:]], [mask[:2], mask[2:5, :6], mask[5:]], 0.2)
    assert torch.equal(t_whole, t_parts)
    assert torch.equal(parts[0], whole[0][:2]) and torch.equal(parts[2], whole[0][5:])
    assert torch.equal(parts[1], whole[0][2:5, :6])
    kept = whole[0].sum() / mask.sum()
    assert 0.15 < float(kept) <= 0.25  # about the top 20% of the loss tokens


def _update(model, batch, *overrides):
    """One SGD step (lr 1, no clipping) through update_policy; returns the parameter change and the metrics."""
    m = copy.deepcopy(model)
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    cfg_ = load_config(None, ["train.max_grad_norm=0", "algo.loss=pg", "train.micro_batch_tokens=0", *overrides])
    stats = update_policy(m, opt, batch, cfg_, batch.old_logp)
    return torch.cat([(p - q).detach().flatten() for p, q in zip(m.parameters(), model.parameters())]), stats


def _gate_batch(tiny):
    from rlreason.batching import make_train_batch
    from rlreason.rollout.hf import HFEngine
    from rlreason.tasks import TASKS

    model, tok = tiny
    torch.manual_seed(0)
    rollout = HFEngine(model, tok).generate(TASKS.get("arithmetic")({}, seed=0).eval_samples(3), n=2,
                                            max_new_tokens=8)
    return make_train_batch(rollout, torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0]), tok.pad_token_id)


def test_entropy_quantile_update_is_split_invariant_and_masks_by_hand(tiny):
    """top_entropy_quantile 0.3: the same update with 1, 2 or 6 rows per micro-batch, equal to the pg gradient
    of the gated tokens computed by hand; 1.0 is the plain update."""
    model, _ = tiny
    batch = _gate_batch(tiny)
    whole, stats = _update(model, batch, "algo.top_entropy_quantile=0.3", "train.micro_batch_size=6")
    for micro in (2, 1):
        split, _ = _update(model, batch, "algo.top_entropy_quantile=0.3", f"train.micro_batch_size={micro}")
        torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-7)
    ref = copy.deepcopy(model)
    logp, ent = token_logprobs(ref, batch.input_ids, batch.attention_mask, with_entropy=True)
    mask = batch.loss_mask
    threshold = torch.quantile(ent.detach()[mask.bool()], 0.7)
    gate = (ent.detach() >= threshold) & mask.bool()
    (-(batch.advantages * logp * gate).sum() / mask.sum()).backward()  # pg, token_mean over ALL loss tokens
    by_hand = torch.cat([-p.grad.flatten() for p in ref.parameters()])
    torch.testing.assert_close(whole, by_hand, rtol=1e-4, atol=1e-6)
    assert stats["policy/entropy_gate_frac"] == pytest.approx(float(gate.sum() / mask.sum()))
    assert stats["policy/entropy_threshold"] == pytest.approx(float(threshold))
    off, off_stats = _update(model, batch, "train.micro_batch_size=6")
    on_all, _ = _update(model, batch, "algo.top_entropy_quantile=1.0", "train.micro_batch_size=6")
    assert torch.equal(off, on_all) and "policy/entropy_gate_frac" not in off_stats
    assert not torch.allclose(off, whole)


def _ranked_batch(vocab: int):
    """8 right-padded rows of different lengths (prompt: the first 4 tokens), fixed advantages."""
    from rlreason.types import TrainBatch

    g = torch.Generator().manual_seed(3)
    N, T = 8, 12
    ids = torch.randint(10, vocab, (N, T), generator=g)
    attn, mask = torch.zeros(N, T, dtype=torch.long), torch.zeros(N, T)
    for i in range(N):
        length = 6 + (i * 5) % 7
        attn[i, :length], mask[i, 4:length] = 1, 1
    return TrainBatch(input_ids=ids, attention_mask=attn, loss_mask=mask, old_logp=torch.zeros(N, T),
                      advantages=torch.randn(N, generator=g))


def _gated_update(model_dir: str, batch, strategy: str = "ddp"):
    """One update_policy step with top_entropy_quantile 0.3 and micro-batches of 3 rows: (metrics, parameters)."""
    from rlreason import distributed
    from rlreason.policy import load_model

    torch.manual_seed(0)
    model = distributed.wrap_model(load_model(model_dir, "float32", "cpu")[0], strategy)
    cfg_ = load_config(None, ["algo.top_entropy_quantile=0.3", "train.micro_batch_size=3",
                              "train.micro_batch_tokens=0", "train.max_grad_norm=0"])
    stats = update_policy(model, torch.optim.SGD(model.parameters(), lr=1.0), batch, cfg_, batch.old_logp)
    return stats, distributed.full_state_dict(model)


def _gate_worker(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    import os

    from rlreason import distributed
    from rlreason.policy import load_model

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    assert distributed.init("cpu")
    batch = _ranked_batch(load_model(model_dir, "float32", "cpu")[0].config.vocab_size)
    torch.save(_gated_update(model_dir, batch.select(torch.arange(rank, 8, world))), f"{out}/gate{rank}.pt")
    distributed.close()


@pytest.mark.slow
def test_entropy_threshold_spans_the_ranks(tiny_model_dir, tmp_path):
    """DDP on 2 gloo ranks (each with half the rows, split into micro-batches of 3): the same threshold, gate
    fraction and updated parameters as one process on the whole batch."""
    import socket

    import torch.multiprocessing as mp

    from rlreason.policy import load_model

    torch.set_num_threads(1)
    whole = _ranked_batch(load_model(tiny_model_dir, "float32", "cpu")[0].config.vocab_size)
    ref_stats, ref_params = _gated_update(tiny_model_dir, whole)
    assert 0.2 < ref_stats["policy/entropy_gate_frac"] < 0.4
    alone = _gated_update(tiny_model_dir, whole.select(torch.arange(0, 8, 2)))[0]  # rank 0's rows by themselves
    assert alone["policy/entropy_threshold"] != pytest.approx(ref_stats["policy/entropy_threshold"], rel=1e-6)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gate_worker, args=(2, port, tiny_model_dir, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        stats, params = torch.load(tmp_path / f"gate{rank}.pt", weights_only=False)
        for key in ("policy/entropy_threshold", "policy/entropy_gate_frac"):
            assert stats[key] == pytest.approx(ref_stats[key], rel=1e-6), key
        for k in params:
            torch.testing.assert_close(params[k], ref_params[k], rtol=1e-4, atol=1e-5, msg=k)
