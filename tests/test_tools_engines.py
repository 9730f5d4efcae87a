"""Tool calls through the real engines (HF's decoding loop, in-process vLLM) on a scripted model
(`tests/tool_script.py`: a Llama whose weights make it write a fixed tool-using completion).

What must hold (issue 25):
- for every sample, the trained token ids are the engine's sampled ids with the tool output ids spliced in,
  position by position, and the loss mask is 0 exactly on the tool output;
- a hostile call (the sandbox battery's cases) runs in the sandbox only, and the sample is scored normally;
- a 3-step training run with tools works on each engine.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rlreason import train
from rlreason.batching import make_train_batch
from rlreason.build import rollout_tools
from rlreason.config import RolloutConfig
from rlreason.config_load import load_config
from rlreason.policy import load_model
from rlreason.rewards.routing import Scorer
from rlreason.rollout.hf import HFEngine
from rlreason.rollout.tools import output_block
from rlreason.types import Sample
from tool_script import save_scripted, script

SAMPLES = [Sample(id=f"q{i}", task="tool_arith", messages=[{"role": "user", "content": "6*7"}], answer="42")
           for i in range(2)]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> str:
    return save_scripted(tmp_path_factory.mktemp("scripted"))


def spy_steps(engine):
    """Record what the engine sampled at each step, per trace (keyed by object id, in first-seen order)."""
    seen = {}
    step = engine._step

    def spy(traces, *args):
        pieces = step(traces, *args)
        for t, (ids, _, _) in zip(traces, pieces):
            seen.setdefault(id(t), []).append(list(ids))
        return pieces

    engine._step = spy
    return seen


def check_sampled_plus_tool_ids(engine, tok, n=2):
    engine.tools = rollout_tools(RolloutConfig(tools=["python"], tool_timeout_s=5), tok)
    seen = spy_steps(engine)
    r = engine.generate(SAMPLES, n=n, temperature=1.0, max_new_tokens=64)
    out_ids = tok(output_block("42\n", 512, after_newline=False), add_special_tokens=False).input_ids
    batch = make_train_batch(r, None, tok.pad_token_id)
    pieces = list(seen.values())
    assert len(pieces) == len(r) == 2 * n
    want = [tok.convert_tokens_to_ids(t) for t in script("print(6*7)")]
    close = tok.convert_tokens_to_ids("\n```")
    for i, (c, steps) in enumerate(zip(r.completions, pieces)):
        k = next(j for j, ids in enumerate(steps) if ids[-1] == close) + 1  # vLLM also stops at the opening fence
        before, after = sum(steps[:k], []), sum(steps[k:], [])
        assert before + after == want  # the engine sampled the script, paused after the fence
        assert c.token_ids == before + out_ids + after  # ... and the output ids sit in between, untouched
        assert c.tool_mask == [0] * len(before) + [1] * len(out_ids) + [0] * len(after)
        p = len(r.prompt_ids[i // n])
        row = batch.input_ids[i, p:p + len(c.token_ids)].tolist()
        assert row == c.token_ids
        assert batch.loss_mask[i, p:p + len(c.token_ids)].tolist() == [1 - m for m in c.tool_mask]
        assert batch.loss_mask[i].sum() == len(before) + len(after)
        assert c.finish_reason == "stop" and c.text.endswith("\\boxed{42}") and c.tool_calls[0].output == "42\n"
    assert Scorer.for_all([{"name": "math_answer"}]).correct(r) == [True] * len(r)


def test_hf_trained_ids_are_sampled_ids_plus_tool_ids(scripted):
    model, tok = load_model(scripted, "float32", "cpu")
    eng = HFEngine(model, tok)
    plain = eng.generate(SAMPLES, n=1, max_new_tokens=64)  # without tools the script stops at the fence
    assert [c.text for c in plain.completions] == ["<think>```python\nprint(6*7)\n```"] * 2
    check_sampled_plus_tool_ids(eng, tok)


HOSTILE = {  # the sandbox battery's cases (tests/test_rewards_sandbox.py); they run only inside the sandbox
    "fork_bomb": ("import os\nwhile True:\n    os.fork()", {"error", "timeout"}),
    "infinite_loop": ("while True:\n    pass", {"timeout"}),
    "huge_output": ("print('x' * 10**7)", {"ok"}),
    "kill_everything": ("import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('alive')", {"ok", "error"}),
    "read_files": ("print(open('/proc/1/cmdline').read()[:80])\nimport os\nprint(os.listdir('/tmp'))", {"ok", "error"}),
    "write_outside": ("open('/tmp/rlreason-tool-pwned.txt', 'w').write('x')", {"error"}),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_tool_call_scores_the_sample_normally(tmp_path, name):
    code, statuses = HOSTILE[name]
    model, tok = load_model(save_scripted(tmp_path / "m", code), "float32", "cpu")
    eng = HFEngine(model, tok)
    eng.tools = rollout_tools(RolloutConfig(tools=["python"], tool_timeout_s=2, tool_output_chars=64), tok)
    r = eng.generate(SAMPLES[:1], n=1, max_new_tokens=200)
    (c,) = r.completions
    assert [x.status for x in c.tool_calls] in [[s] for s in statuses], c.tool_calls
    assert c.finish_reason == "stop" and c.text.endswith("</think>\\boxed{42}")
    longest = output_block("x" * 10**8, 64, after_newline=False)  # 64 characters and the truncation note
    assert 0 < sum(c.tool_mask) <= len(tok(longest, add_special_tokens=False).input_ids)
    assert Scorer.for_all([{"name": "math_answer"}]).correct(r) == [True]  # scored like any sample
    assert not Path("/tmp/rlreason-tool-pwned.txt").exists()


def tool_run_cfg(tmp_path, model_dir, engine, *extra):
    return load_config(None, [
        f"run.root={tmp_path}", "run.name=tools", f"model.path={model_dir}", f"rollout.engine={engine}",
        "data.task=tool_arith", "rollout.tools=[python]", "rollout.prompts_per_step=2", "rollout.group_size=2",
        "rollout.max_new_tokens=48", "train.steps=3", "train.lr=1e-3", "data.eval_size=2", "log.progress=false",
        "rollout.kv_cache_gib=0.25", *extra])


def check_tool_run(summary, staleness=None):
    rows = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss/total" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    if staleness is not None:  # rollout.max_staleness: the tool calls ran on its background thread
        assert [r["rollout/staleness_max"] for r in steps] == staleness
    for r in steps:
        assert r["rollout/tool_calls"] == 1.0 and r["rollout/tool_error_rate"] == 0.0 and r["perf/tool_s"] > 0
        assert r["rollout/loss_tokens"] == 4 * 10  # the 10 sampled tokens of each of the 4 samples, no tool token
        assert r["rollout/response_length"] > 10
    assert summary["accuracy_after"] is not None


def test_hf_three_step_training_with_tools(tmp_path, scripted):
    check_tool_run(train(tool_run_cfg(tmp_path, scripted, "hf")))


def test_hf_three_step_training_with_tools_and_max_staleness(tmp_path, scripted):
    check_tool_run(train(tool_run_cfg(tmp_path, scripted, "hf", "rollout.max_staleness=1")), staleness=[0, 1, 1])


vllm_installed = pytest.mark.skipif(not __import__("importlib").util.find_spec("vllm"), reason="vLLM is not installed")


@vllm_installed  # ~13 s on one busy CPU core (engine start included): in the default suite
def test_vllm_trained_ids_are_sampled_ids_plus_tool_ids_and_three_steps_train(tmp_path, scripted):
    from rlreason.rollout.vllm import VLLMEngine

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    model, tok = load_model(scripted, "float32", "cpu")
    eng = VLLMEngine(model, tok, RolloutConfig(kv_cache_gib=0.25), seed=0)
    try:
        check_sampled_plus_tool_ids(eng, tok)
    finally:
        eng.close()
    check_tool_run(train(tool_run_cfg(tmp_path, scripted, "vllm")))
    check_tool_run(train(tool_run_cfg(tmp_path, scripted, "vllm", "rollout.max_staleness=1", "run.name=async")),
                   staleness=[0, 1, 1])
