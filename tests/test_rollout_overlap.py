"""rlreason.rollout.overlap (`rollout.max_staleness`): rollouts generated ahead on a background thread.

The key property: the rollout trained in step k is exactly the one the weights after step k-1-s give with
the step's own random stream, whatever the thread timing (the trainer changes its weights meanwhile)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from rlreason import train
from rlreason.config_load import load_config
from rlreason.jsonl import read_records
from rlreason.policy import REPO_ROOT
from rlreason.rollout.hf import HFEngine
from rlreason.rollout.overlap import SEED_STRIDE, OverlapRollouts
from rlreason.sampling import UniformSampler

from test_rollout_hf import eos_biased
from test_rollout_partial import cfg, nudge, stream


@pytest.mark.parametrize("s", [1, 2])
def test_step_k_is_generated_by_the_weights_after_step_k_minus_1_minus_s(tiny, s):
    model, tok = tiny
    eos_biased(model, tok, 2.0)
    engine, source, sampler = HFEngine(model, tok), OverlapRollouts(s, last_step=5, seed=3), UniformSampler(stream())
    snapshots = []
    for version in range(5):
        snapshots.append(copy.deepcopy(model.state_dict()))
        samples, rollout = source.next(sampler, engine, cfg(P=2, G=2, max_new=16), version)
        step, by = version + 1, max(0, version - s)  # the weights after step k-1-s (the initial ones at first)
        assert all(c.versions == [by] * len(c.token_ids) for c in rollout.completions)
        reference = HFEngine(copy.deepcopy(model), tok)
        reference.model.load_state_dict(snapshots[by])
        reference.generator = torch.Generator().manual_seed(3 * SEED_STRIDE + step)
        expected = reference.generate(samples, 2, 1.0, 1.0, 16)
        assert [c.token_ids for c in rollout.completions] == [c.token_ids for c in expected.completions]
        assert [c.logprobs for c in rollout.completions] == [c.logprobs for c in expected.completions]
        nudge(model, version)  # the "update" runs while the next rollouts are generated
    assert not source.ahead  # nothing queued past last_step


def test_the_rollouts_generated_ahead_round_trip(tiny):
    model, tok = tiny
    engine, sampler = HFEngine(model, tok), UniformSampler(stream())
    source = OverlapRollouts(1, last_step=4, seed=0)
    source.next(sampler, engine, cfg(), 0)
    state = source.state_dict()
    assert sorted(state["ahead"]) == [2]
    again = OverlapRollouts(1, last_step=4, seed=0)
    again.load_state_dict(copy.deepcopy(state))
    _, a = source.next(sampler, engine, cfg(), 1)
    _, b = again.next(UniformSampler(stream()), engine, cfg(), 1)
    assert [c.token_ids for c in a.completions] == [c.token_ids for c in b.completions]


SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
def test_a_short_run_with_max_staleness_trains_one_version_behind(tmp_path):
    cfg_ = load_config(None, [f"model.path={SHIPPED}", f"run.root={tmp_path}", "run.name=async", "train.steps=4",
                              "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=24",
                              "rollout.max_staleness=1", "train.threads=1", "data.eval_size=4", "eval.every=2",
                              "log.progress=false", "train.lr=1e-3"])
    summary = train(cfg_)
    steps = [r for r in read_records(Path(summary["run_dir"]) / "metrics.jsonl")[0] if "loss/total" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert [r["rollout/staleness_max"] for r in steps] == [0, 1, 1, 1]
    assert [r["rollout/stale_token_frac"] for r in steps] == [0, 1, 1, 1]
    assert [r["rollout/generated_ahead"] for r in steps] == [1, 1, 1, 0]
    assert summary["accuracy_after"] is not None


class Broken:
    """A detached engine whose first generate fails and whose later ones wait for `release` (then fail too)."""

    def __init__(self):
        self.generator, self.calls, self.release = None, 0, __import__("threading").Event()

    def load_weights(self, state):
        pass

    def generate(self, *args):
        self.calls += 1
        if self.calls > 1:
            self.release.wait(10)
        raise RuntimeError(f"engine broke in call {self.calls}")


def test_a_background_error_reaches_the_trainer_and_cancels_the_queued_rollouts(tiny):
    from rlreason.rollout.overlap import Background

    model, tok = tiny
    source, broken = OverlapRollouts(2, last_step=5, seed=0), Broken()
    source.worker, source.pool = broken, Background(1)
    with pytest.raises(RuntimeError, match="engine broke in call 1"):
        source.next(UniformSampler(stream()), HFEngine(model, tok), cfg(), 0)  # queues steps 1-3, step 1 fails
    assert source.ahead[3].cancelled()  # step 2 may have started (it then waits for `release`): step 3 not
    broken.release.set()
    if not source.ahead[2].cancelled():
        with pytest.raises(RuntimeError, match="call 2"):
            source.ahead[2].result(10)
    source.pool.shutdown()
    assert broken.calls <= 2  # step 3 never ran
