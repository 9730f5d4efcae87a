"""rlreason.rollout.partial (`rollout.partial_tokens`): carried, token-budgeted rollouts.

The key properties: every token's stored log-prob is the log-prob of the weights of its recorded version
(a teacher-forced forward pass of those weights), a partially generated sample equals an uninterrupted one
when the weights do not change, the staleness bound holds, and the carried state round-trips."""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rlreason import train
from rlreason.batching import make_train_batch
from rlreason.config_load import load_config
from rlreason.jsonl import read_records
from rlreason.policy import REPO_ROOT, token_logprobs
from rlreason.rollout.hf import HFEngine
from rlreason.rollout.partial import PartialRollouts
from rlreason.rollout.sources import FreshRollouts, make_source
from rlreason.sampling import UniformSampler
from rlreason.types import Sample

from test_rollout_hf import eos_biased


def stream():
    for i in itertools.count():
        yield Sample(id=f"s{i}", task="arithmetic", prompt=f"{i % 97}+{i % 13}=", answer=str(i % 97 + i % 13))


def cfg(P=2, G=2, max_new=12):
    return SimpleNamespace(prompts_per_step=P, group_size=G, temperature=1.0, top_p=1.0, max_new_tokens=max_new)


def nudge(model, seed: int, scale: float = 0.05) -> None:
    """A stand-in for an optimizer step: every weight moves a little."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def check_logprobs_of_versions(rollout, snapshots, model, pad_id, atol: float = 2e-5):
    """Each completion token's stored log-prob equals a teacher-forced pass of its version's weights."""
    batch = make_train_batch(rollout, None, pad_id)
    now = copy.deepcopy(model.state_dict())
    checked = 0
    for v in batch.versions.unique().tolist():
        if v < 0:
            continue
        model.load_state_dict(snapshots[v])
        with torch.no_grad():
            lp = token_logprobs(model.eval(), batch.input_ids, batch.attention_mask, 1.0)[0]  # [N, T]
        at = batch.versions == v
        torch.testing.assert_close(batch.old_logp[at], lp[at], atol=atol, rtol=0)
        checked += int(at.sum())
    model.load_state_dict(now)
    assert checked == int((batch.versions >= 0).sum()) > 0
    return batch


def test_each_token_keeps_the_logprob_and_version_of_the_policy_that_sampled_it(tiny):
    model, tok = tiny
    eos_biased(model, tok, 3.0)  # answers of a few to a few dozen tokens: many carried across steps
    engine, pool, sampler = HFEngine(model, tok), PartialRollouts(budget=3, max_steps=2), UniformSampler(stream())
    torch.manual_seed(0)
    snapshots, carried, stale = [], 0, 0
    for version in range(6):
        snapshots.append(copy.deepcopy(model.state_dict()))
        samples, rollout = pool.next(sampler, engine, cfg(max_new=16), version)
        assert len(samples) == 2 and len(rollout) == 4
        batch = check_logprobs_of_versions(rollout, snapshots, model, tok.pad_token_id)
        behind = version - batch.versions[batch.versions >= 0]
        assert int(behind.max()) <= 2  # rollout.partial_max_steps
        stale += int((behind > 0).sum())
        for c in rollout.completions:
            assert len(c.token_ids) == len(c.logprobs) == len(c.versions) <= 16
            assert c.versions == sorted(c.versions)  # continued by ever newer weights
            assert (c.token_ids[-1] in engine.stop_ids) == (c.finish_reason == "stop")
        carried += int(pool.metrics()["rollout/inflight_groups"])
        nudge(model, version)  # the next step samples with new weights
    assert carried > 0 and stale > 0  # the test did exercise carried samples and older versions


def test_with_unchanged_weights_a_partial_sample_equals_an_uninterrupted_one(tiny):
    """One group (P=1): budgeted rounds give the tokens and log-probs of one generate call."""
    model, tok = tiny
    eos_biased(model, tok, 2.0)
    engine = HFEngine(model, tok)
    sample = next(stream())
    torch.manual_seed(7)
    whole = engine.generate([sample], 4, 1.0, 1.0, 20)
    torch.manual_seed(7)
    pool, prefills, prefill = PartialRollouts(budget=3, max_steps=100), [], engine._prefill
    engine._prefill = lambda ids, *rest: prefills.append(ids.shape) or prefill(ids, *rest)
    _, parts = pool.next(UniformSampler(iter([sample])), engine, cfg(P=1, G=4, max_new=20), version=0)
    assert pool.metrics()["rollout/partial_rounds"] > 1
    assert len(prefills) == 1  # same weights: later rounds continue from the kept KV caches, nothing prefilled again
    for a, b in zip(whole.completions, parts.completions):
        assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason and a.text == b.text
        torch.testing.assert_close(torch.tensor(b.logprobs), torch.tensor(a.logprobs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("groups", [0, 6])  # rollout.partial_groups: P in flight, or 3P
def test_groups_past_the_bound_end_truncated_and_are_trained_at_once(tiny, groups):
    model, tok = tiny
    eos_biased(model, tok, 1.0)  # ~3% EOS per token: lengths spread up to max_new_tokens, far past one step's rounds
    engine, sampler = HFEngine(model, tok), UniformSampler(stream())
    pool = PartialRollouts(budget=2, max_steps=1, groups=groups)
    torch.manual_seed(0)
    r, expired, cut = cfg(P=2, G=1, max_new=40), 0, 0
    for version in range(5):
        _, rollout = pool.next(sampler, engine, r, version)
        batch = make_train_batch(rollout, None, tok.pad_token_id)
        assert int((version - batch.versions[batch.versions >= 0]).max()) <= 1
        expired += int(pool.metrics()["rollout/expired_groups"])
        cut += sum(c.truncated and len(c.token_ids) < 40 for c in rollout.completions)
    assert expired > 0 and cut > 0  # samples cut short by the bound were trained


def test_the_carried_state_round_trips(tiny):
    """A pool restored from its state_dict continues exactly as the original (the checkpoint's contract)."""
    model, tok = tiny
    eos_biased(model, tok, 1.0)
    engine, pool, sampler = HFEngine(model, tok), PartialRollouts(budget=2, max_steps=3), UniformSampler(stream())
    torch.manual_seed(0)
    pool.next(sampler, engine, cfg(max_new=40), 0)
    assert pool.inflight  # carried samples with some tokens
    state, sampler_state, rng = copy.deepcopy(pool.state_dict()), sampler.state_dict(), torch.get_rng_state()
    _, first = pool.next(sampler, engine, cfg(max_new=40), 1)
    again, sampler2 = PartialRollouts(budget=2, max_steps=3), UniformSampler(stream())
    again.load_state_dict(state)
    sampler2.load_state_dict(sampler_state)
    torch.set_rng_state(rng)
    _, second = again.next(sampler2, engine, cfg(max_new=40), 1)
    assert any(0 in c.versions for c in first.completions)  # a sample begun before the "checkpoint" was trained
    assert [c.token_ids for c in first.completions] == [c.token_ids for c in second.completions]
    assert [c.logprobs for c in first.completions] == [c.logprobs for c in second.completions]
    assert [c.versions for c in first.completions] == [c.versions for c in second.completions]


def test_make_source_picks_the_configured_source():
    from rlreason.rollout.overlap import OverlapRollouts

    def rollout(tokens=0, staleness=0):
        return SimpleNamespace(partial_tokens=tokens, partial_max_steps=3, partial_groups=0, max_staleness=staleness)

    assert isinstance(make_source(rollout()), FreshRollouts) and not make_source(rollout()).stateful
    pool = make_source(rollout(tokens=64))
    assert isinstance(pool, PartialRollouts) and (pool.budget, pool.max_steps) == (64, 3) and pool.stateful
    ahead = make_source(rollout(staleness=2), 10, 7)
    assert isinstance(ahead, OverlapRollouts) and (ahead.s, ahead.last_step, ahead.seed) == (2, 10, 7)


SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
def test_a_short_run_with_partial_rollouts_trains_and_logs_staleness(tmp_path):
    cfg = load_config(None, [f"model.path={SHIPPED}", f"run.root={tmp_path}", "run.name=partial", "train.steps=4",
                             "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=32",
                             "rollout.partial_tokens=8", "rollout.partial_max_steps=2", "train.threads=1",
                             "data.eval_size=4", "log.progress=false", "train.lr=1e-3"])
    summary = train(cfg)
    steps = [r for r in read_records(Path(summary["run_dir"]) / "metrics.jsonl")[0] if "loss/total" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(0 <= r["rollout/staleness_max"] <= 2 and 0 <= r["rollout/stale_token_frac"] <= 1 for r in steps)
    assert all(r["rollout/staleness_mean"] <= r["rollout/staleness_max"] for r in steps)
    assert any(r["rollout/inflight_groups"] > 0 for r in steps) and any(r["rollout/staleness_max"] > 0 for r in steps)
    assert all(r["rollout/new_tokens"] > 0 and r["rollout/partial_rounds"] >= 1 for r in steps)
