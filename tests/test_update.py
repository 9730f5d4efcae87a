"""Stage 6 options: mini-batches, truncated IS against the engine, the entropy bonus, overlong filtering,
KL in the reward, and their config checks."""
from __future__ import annotations

import copy
import re
import json
from pathlib import Path

import pytest
import torch

from rlreason.errors import ConfigError
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT, token_logprobs
from rlreason.rollout.hf import HFEngine
from rlreason.tasks import TASKS
from rlreason import train
from rlreason.batching import make_train_batch
from rlreason.types import Completion, Rollout, Sample
from rlreason.update import micro_batches, update_plan, update_policy

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"


def test_update_plan_covers_every_row_once_per_epoch():
    torch.manual_seed(0)
    plan = update_plan(10, epochs=2, mini_batches=3, micro=2)
    assert len(plan) == 6  # 2 epochs x 3 optimizer steps
    for epoch in (plan[:3], plan[3:]):
        rows = torch.cat([torch.cat(step) for step in epoch])
        assert sorted(rows.tolist()) == list(range(10))
        assert [sum(len(m) for m in step) for step in epoch] == [4, 3, 3]  # tensor_split sizes
        assert all(len(m) <= 2 for step in epoch for m in step)  # micro-batches
    one = update_plan(5, epochs=1, mini_batches=1, micro=2)  # no shuffling with one mini-batch
    assert [m.tolist() for m in one[0]] == [[0, 1], [2, 3], [4]]


def test_micro_batches_pack_by_token_budget():
    lengths = torch.tensor([3, 9, 5, 9, 2, 7])
    rows = torch.arange(6)
    split = lambda micro, budget: [m.tolist() for m in micro_batches(rows, micro, lengths, budget)]  # noqa: E731
    # longest first (ties keep row order); a micro-batch holds rows x its longest <= budget
    assert split(10, 18) == [[1, 3], [5, 2], [0, 4]]
    assert split(10, 8) == [[1], [3], [5], [2], [0, 4]]  # a row longer than the budget goes alone
    assert split(1, 100) == [[1], [3], [5], [2], [0], [4]]  # the row cap still applies
    assert split(4, 0) == [[0, 1, 2, 3], [4, 5]]  # budget 0: rollout order, micro rows
    assert [m.tolist() for m in micro_batches(torch.tensor([4, 0, 2]), 10, lengths, 10)] == [[2, 0], [4]]  # a subset
    plan = update_plan(6, epochs=1, mini_batches=1, micro=10, lengths=lengths, budget=18)
    assert [m.tolist() for m in plan[0]] == [[1, 3], [5, 2], [0, 4]]


def _batch(tiny, n=2, max_new=6):
    model, tok = tiny
    torch.manual_seed(0)
    rollout = HFEngine(model, tok).generate(TASKS.get("arithmetic")({}, seed=0).eval_samples(2), n=n,
                                            max_new_tokens=max_new)
    adv = torch.tensor([1.0, -1.0] * (len(rollout) // 2))
    return rollout, make_train_batch(rollout, adv, tok.pad_token_id)


def _cfg(*extra):
    return load_config(None, ["train.max_grad_norm=0", "algo.loss=pg", *extra])


def _step(model, batch, cfg, engine_logp):
    m = copy.deepcopy(model)
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    stats = update_policy(m, opt, batch, cfg, engine_logp)
    return torch.cat([(p.detach() - q.detach()).flatten() for p, q in zip(m.parameters(), model.parameters())]), stats


def test_tis_cap_weights_the_loss_by_the_capped_engine_ratio(tiny):
    """Engine log-probs log(4) below the trainer's: ratio 4 everywhere. cap 2 -> every token's loss x2, so the
    SGD update is exactly twice the un-weighted one; cap 8 -> x4. Metrics report the ratio either way."""
    model, _ = tiny
    _, batch = _batch(tiny)
    with torch.no_grad():
        trainer_logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask)
    engine_logp = (trainer_logp - torch.log(torch.tensor(4.0))) * batch.loss_mask
    plain, stats = _step(model, batch, _cfg(), engine_logp)
    assert stats["policy/engine_ratio_mean"] == pytest.approx(4.0, rel=1e-4)
    assert stats["policy/engine_ratio_min"] == pytest.approx(4.0, rel=1e-4)
    assert "policy/engine_ratio_capped" not in stats  # only with a cap
    capped, stats2 = _step(model, batch, _cfg("algo.tis_cap=2"), engine_logp)
    torch.testing.assert_close(capped, 2 * plain, rtol=1e-4, atol=1e-6)
    assert stats2["policy/engine_ratio_capped"] == pytest.approx(1.0)
    uncapped, _ = _step(model, batch, _cfg("algo.tis_cap=8"), engine_logp)
    torch.testing.assert_close(uncapped, 4 * plain, rtol=1e-4, atol=1e-6)


def test_entropy_bonus_gradient_and_direction(tiny):
    """Zero advantages, entropy_coef 1: the update is a gradient step on -mean entropy, so entropy rises."""
    model, tok = tiny
    rollout, batch = _batch(tiny)
    batch.set_advantages(torch.zeros(len(batch)))
    delta, stats = _step(model, batch, _cfg("algo.entropy_coef=1.0", "train.micro_batch_size=3"), batch.old_logp)
    assert delta.abs().max() > 0
    # the same update, computed by hand: d/dtheta of -(sum of masked entropies / tokens)
    ref = copy.deepcopy(model)
    _, ent = token_logprobs(ref, batch.input_ids, batch.attention_mask, with_entropy=True, entropy_grad=True)
    (-(ent * batch.loss_mask).sum() / batch.loss_mask.sum()).backward()
    by_hand = torch.cat([-p.grad.flatten() for p in ref.parameters()])  # SGD lr 1
    torch.testing.assert_close(delta, by_hand, rtol=1e-4, atol=1e-6)
    moved = copy.deepcopy(model)
    for p, d in zip(moved.parameters(), delta.split([p.numel() for p in model.parameters()])):
        p.data += 1e-2 * d.view_as(p) / delta.norm()
    with torch.no_grad():
        _, e0 = token_logprobs(model, batch.input_ids, batch.attention_mask, with_entropy=True)
        _, e1 = token_logprobs(moved, batch.input_ids, batch.attention_mask, with_entropy=True)
    assert (e1 * batch.loss_mask).sum() > (e0 * batch.loss_mask).sum()
    assert stats["policy/entropy"] > 0


def test_mini_batches_make_several_optimizer_steps(tiny):
    """mini_batches=2: two optimizer steps per rollout (the second sees a moved policy: ratio != 1)."""
    model, _ = tiny
    _, batch = _batch(tiny)
    calls = []
    m = copy.deepcopy(model)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    opt.step = (lambda orig: (lambda *a, **k: (calls.append(1), orig(*a, **k))[1]))(opt.step)
    cfg = load_config(None, ["algo.mini_batches=2", "train.max_grad_norm=0"])
    batch.old_logp = token_logprobs(model, batch.input_ids, batch.attention_mask)[0].detach()
    stats = update_policy(m, opt, batch, cfg, batch.old_logp)
    assert len(calls) == 2
    assert stats["policy/ratio_mean"] != pytest.approx(1.0, abs=1e-9)
    assert stats["policy/engine_logprob_abs_diff_max"] < 1e-5  # measured on pre-update log-probs only


def test_mask_truncated_drops_cut_off_completions():
    s = Sample(id="a", task="t", prompt="p", answer="1")
    done = Completion(text="x", token_ids=[5, 2], logprobs=[-0.1, -0.2], finish_reason="stop")
    cut = Completion(text="y", token_ids=[6, 7, 8], logprobs=[-0.1, -0.2, -0.3], finish_reason="length")
    rollout = Rollout([s], [done, cut], 2, prompt_ids=[[1, 3]])
    kept = make_train_batch(rollout, torch.zeros(2), 0)
    dropped = make_train_batch(rollout, torch.zeros(2), 0, mask_truncated=True)
    assert kept.loss_mask.sum(-1).tolist() == [2, 3]
    assert dropped.loss_mask.sum(-1).tolist() == [2, 0]
    assert torch.equal(dropped.input_ids, kept.input_ids)


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
def test_kl_in_the_reward_runs_and_logs_kl(tmp_path):
    cfg = load_config(None, [
        f"run.root={tmp_path}", "run.name=klr", f"model.path={SHIPPED}", "rollout.prompts_per_step=4",
        "rollout.group_size=4", "rollout.max_new_tokens=16", "train.steps=3", "train.lr=1e-3",
        "data.eval_size=0", "log.progress=false", "algo.kl.coef=0.1", "algo.kl.where=reward",
        "algo.entropy_coef=0.01", "algo.tis_cap=2", "algo.mini_batches=2", "algo.mask_truncated=true"])
    train(cfg)
    rows = [json.loads(x) for x in (Path(tmp_path) / "klr" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["policy/kl"] == pytest.approx(0.0, abs=1e-6)  # the first rollout comes from the reference
    assert rows[-1]["policy/kl"] > 0  # two updates later the policy has moved away from it
    assert all("policy/engine_ratio_mean" in r and "rollout/loss_tokens" in r for r in rows)


@pytest.mark.parametrize("override, message", [
    (["algo.loss=kimi"], "loss 'kimi' needs advantage dr_grpo"),
    (["algo.loss=sppo"], "loss 'sppo' needs advantage win_rate"),
    (["algo.tis_cap=0.5"], "algo.tis_cap: must be 0 (off) or >= 1"),
    (["algo.kl.where=both"], "algo.kl.where: 'both' is not loss | reward"),
    (["algo.mini_batches=1000"], "algo.mini_batches: must be in [1, prompts_per_step * group_size = 128]"),
    (["algo.entropy_coef=-1"], "algo.entropy_coef: must be >= 0"),
    (["algo.lam=1.5"], "algo.lam: must be in [0, 1]"),
    (["algo.critic.value_clip=-1"], "algo.critic.value_clip: must be >= 0"),
])
def test_bad_options_are_named(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, override)


def test_yaml_base_chain(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  lr: 0.01\n  steps: 7\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain:\n  lr: 0.02\n")
    cfg = load_config(str(tmp_path / "child.yaml"))
    assert cfg.train.lr == 0.02 and cfg.train.steps == 7
    (tmp_path / "orphan.yaml").write_text("base: nope.yaml\n")
    with pytest.raises(ConfigError, match="nope.yaml: no such config file"):
        load_config(str(tmp_path / "orphan.yaml"))
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(str(tmp_path / "a.yaml"))


def test_gradient_checkpointing_recomputes_in_the_update_and_changes_nothing(tiny):
    """model.gradient_checkpointing: transformers checkpoints a layer only while that layer is in training mode,
    and the policy stays in eval mode, so before this fix the option did nothing in RL. Now the update's
    layers recompute in backward (the checkpoint function runs), the step's parameters equal those without
    checkpointing, and afterwards the layers are back in eval mode (generation keeps its KV cache)."""
    import copy

    from rlreason.algos import ADVANTAGES
    from rlreason.batching import make_train_batch
    from rlreason.config_load import load_config
    from rlreason.rollout.hf import HFEngine
    from rlreason.tasks import TASKS

    model, tok = tiny
    torch.manual_seed(0)
    rollout = HFEngine(model, tok).generate(TASKS.get("arithmetic")({}, seed=0).eval_samples(2), n=4, max_new_tokens=6)
    cfg = load_config(None, ["train.max_grad_norm=0"])
    batch = make_train_batch(rollout, ADVANTAGES.get("grpo")(torch.tensor([1.0, 0, 0, 1, 0, 1, 1, 1]), 4, cfg.algo),
                             tok.pad_token_id)
    plain, ckpt = copy.deepcopy(model), copy.deepcopy(model)
    ckpt.gradient_checkpointing_enable()
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in ckpt.modules() if isinstance(m, GradientCheckpointingLayer)]  # the decoder layers
    calls = []
    for layer in layers:
        inner = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _f=inner, **k: calls.append(1) or _f(*a, **k)
    for m in (plain, ckpt):
        update_policy(m, torch.optim.SGD(m.parameters(), lr=1.0), batch, cfg, batch.old_logp)
    assert layers and len(calls) == len(layers)  # one micro-batch: every layer checkpointed once
    assert not any(m.training for m in ckpt.modules())
    for p, q in zip(plain.parameters(), ckpt.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
