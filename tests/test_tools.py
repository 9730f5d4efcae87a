"""rlreason.rollout.tools and its plumbing: fence detection, output blocks, the multi-turn loop on a scripted
step function, tool metrics, the loss mask of tool tokens, advantages across tool gaps, the sandbox's tool
mode, the `python` tool, the rollout.tools config keys, tool_arith's demonstrations and SFT's masking."""
from __future__ import annotations

import pytest
import torch

from rlreason.algos.advantages import gae_returns, reward_to_go
from rlreason.batching import make_train_batch, sft_batch
from rlreason.config_load import load_config
from rlreason.errors import ConfigError
from rlreason.rewards.sandbox import Job, Limits, run
from rlreason.rewards.tool_python import python_tool
from rlreason.rollout.tools import Tools, Trace, closed_block, multi_turn, output_block, split_outputs, tool_metrics
from rlreason.sft import make_examples
from rlreason.tasks import TASKS
from rlreason.tinymodel import build_tokenizer
from rlreason.types import Completion, Rollout, Sample, ToolCall


def test_closed_block_fires_only_once_the_closing_fence_is_written():
    assert closed_block("x ```python\nprint(1)\n```") == "print(1)\n"
    assert closed_block("x ```python\nprint(1)\n``") is None
    assert closed_block("x ```python") is None  # the opener's line is not finished
    assert closed_block("```output\n42\n```") is None  # only python blocks are calls
    assert closed_block("```python\na=1\n```\n```python\nb=2\n```") == "a=1\n"  # the first block of a segment


def test_output_block_and_split_outputs_round_trip():
    block = output_block("1\n2\n", 100, after_newline=False)
    assert block == "\n```output\n1\n2\n```\n"
    text = "<think>```python\nprint(1)\n```" + block + "</think>\\boxed{1}"
    assert split_outputs(text) == [("<think>```python\nprint(1)\n```", False), (block, True), ("</think>\\boxed{1}", False)]
    assert output_block("abcdef", 3, True) == "```output\nabc\n[output truncated: 6 characters]\n```\n"


class Scripted:
    """A step function that replays fixed token pieces per trace (what an engine would sample)."""

    def __init__(self, tok, pieces):
        self.tok, self.pieces, self.calls = tok, pieces, 0

    def __call__(self, traces):
        self.calls += 1
        out = []
        for t in traces:
            text, reason = self.pieces[t.prompt[0]].pop(0)
            ids = self.tok(text, add_special_tokens=False).input_ids[: t.left()]
            out.append((ids, [-0.5] * len(ids), reason if len(ids) < t.left() or reason == "stop" else "length"))
        return out


def tool_set(tok, outputs, max_calls=2, cap=512):
    return Tools(tok, lambda code: outputs[code], max_calls=max_calls, output_chars=cap, workers=2)


def test_multi_turn_splices_tool_ids_between_sampled_ids_and_masks_them():
    tok = build_tokenizer()
    first, then = "<think>```python\nprint(6*7)\n```", "</think>\\boxed{42}"
    step = Scripted(tok, {0: [(first, "pause"), (then, "stop")], 1: [("<think>\\boxed{1}", "stop")]})
    tools = tool_set(tok, {"print(6*7)\n": ("ok", "42\n")})
    a, b = multi_turn([[0, 7], [1, 7]], 200, step, tools)
    out_ids = tok("\n```output\n42\n```\n", add_special_tokens=False).input_ids
    sampled = [tok(x, add_special_tokens=False).input_ids for x in (first, then)]
    assert a.ids == sampled[0] + out_ids + sampled[1]  # position by position, nothing re-tokenised
    assert a.tool_mask == [0] * len(sampled[0]) + [1] * len(out_ids) + [0] * len(sampled[1])
    assert a.logprobs == [-0.5] * len(sampled[0]) + [0.0] * len(out_ids) + [-0.5] * len(sampled[1])
    assert [c.status for c in a.calls] == ["ok"] and a.finish == "stop" and not b.calls and step.calls == 2
    c = a.completion(tok, [tok.eos_token_id])
    assert c.text == first + "\n```output\n42\n```\n" + then and c.policy_mask == [1 - m for m in a.tool_mask]


def test_multi_turn_resumes_after_a_fence_that_closes_no_block_and_stops_at_max_calls():
    tok = build_tokenizer()
    blk = "```python\nprint(1)\n```"
    pieces = {0: [("<think>```", "pause"), ("python\nprint(1)\n```", "pause"), (blk, "pause"), ("x", "stop")]}
    tools = tool_set(tok, {"print(1)\n": ("ok", "1\n")}, max_calls=2)
    (t,) = multi_turn([[0]], 300, Scripted(tok, pieces), tools)
    assert len(t.calls) == 2 and t.finish == "stop"  # the opener alone paused nothing; two calls were made
    assert not tools.may_call(t)


def test_tool_output_counts_toward_the_budget_and_is_cut_there():
    tok = build_tokenizer()
    first = "```python\nprint(1)\n```"
    n = len(tok(first, add_special_tokens=False).input_ids)
    (t,) = multi_turn([[0]], n + 5, Scripted(tok, {0: [(first, "pause")]}), tool_set(tok, {"print(1)\n": ("ok", "1" * 50)}))
    assert len(t.ids) == n + 5 and t.finish == "length" and sum(t.tool_mask) == 5


def test_tool_metrics_rates_per_call_and_calls_per_sample():
    mk = lambda calls: Completion("", [1], [0.0], "stop", tool_mask=[0], tool_calls=calls)  # noqa: E731
    calls = [ToolCall("a", "", "ok", 0.5), ToolCall("b", "", "timeout", 1.0), ToolCall("c", "", "error", 0.5)]
    m = tool_metrics([mk(calls[:2]), mk(calls[2:]), mk([]), mk([])])
    assert m == {"rollout/tool_calls": 0.75, "rollout/tool_error_rate": 1 / 3, "rollout/tool_timeout_rate": 1 / 3,
                 "rollout/tool_budget_exhausted": 0, "perf/tool_s": 2.0}
    assert tool_metrics([Completion("", [1], [0.0], "stop")]) == {}  # tools off


def test_train_batch_loss_mask_is_zero_exactly_on_tool_tokens():
    s = Sample(id="a", task="t", prompt="p", answer="1")
    c = Completion("", [5, 6, 7, 8, 9], [-1.0, -2.0, 0.0, 0.0, -3.0], "stop", tool_mask=[0, 0, 1, 1, 0])
    plain = Completion("", [5, 6], [-1.0, -1.0], "stop")
    b = make_train_batch(Rollout([s], [c, plain], 2, prompt_ids=[[1, 2]]), None, 0)
    assert b.input_ids.tolist() == [[1, 2, 5, 6, 7, 8, 9], [1, 2, 5, 6, 0, 0, 0]]
    assert b.loss_mask.tolist() == [[0, 0, 1, 1, 0, 0, 1], [0, 0, 1, 1, 0, 0, 0]]
    assert b.old_logp.tolist() == [[0, 0, -1, -2, 0, 0, -3], [0, 0, -1, -1, 0, 0, 0]]


def test_returns_carry_across_a_tool_gap():
    """Tool tokens sit between policy tokens: the reward at the end reaches the tokens before the call."""
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    r = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    assert reward_to_go(r, mask, 0.5).tolist() == [[0.5, 0.0, 0.0, 1.0]]  # one policy step apart, not three
    adv, ret = gae_returns(r, torch.tensor([[0.5, 9.0, 9.0, 0.8]]), mask, 1.0, 1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.0, 0.0, 0.2]]))  # the tool positions' values are unused
    torch.testing.assert_close(ret, torch.tensor([[1.0, 0.0, 0.0, 1.0]]))


def test_sandbox_tool_mode_returns_output_and_errors():
    lim = Limits(timeout_s=5, cpu_s=5, memory_mb=256)
    assert run(Job(code="print(4821*2746)", mode="tool", limits=lim)).detail == "13238466\n"
    r = run(Job(code="import sys\nprint('a')\nprint('b', file=sys.stderr)\n1/0", mode="tool", limits=lim))
    assert (r.status, r.passed) == ("ok", 0) and r.detail.splitlines() == ["a", "b", "ZeroDivisionError: division by zero"]
    call = python_tool(1, 256)
    assert call("print(")[0] == "error" and "SyntaxError" in call("print(")[1]
    status, out = call("while True:\n    pass")
    assert status == "timeout" and "TimeoutError" in out


@pytest.mark.parametrize("override, key", [
    ("rollout.tools=[bash]", "rollout.tools"), ("rollout.tools=[python,python]", "rollout.tools"),
    ("rollout.max_tool_calls=0", "rollout.max_tool_calls"), ("rollout.tool_timeout_s=0", "rollout.tool_timeout_s"),
    ("rollout.tool_memory_mb=8", "rollout.tool_memory_mb"), ("rollout.tool_output_chars=0", "rollout.tool_output_chars"),
    ("rollout.tool_output_chars=70000", "rollout.tool_output_chars"), ("rollout.tool_workers=0", "rollout.tool_workers"),
])
def test_bad_tool_config_is_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["rollout.tools=[python]", override])
    assert key in str(e.value) and "\n" not in str(e.value)


def test_tool_configs_load():
    cfg = load_config("configs/tool_arith.yaml")
    assert cfg.rollout.tools == ["python"] and cfg.data.task == "tool_arith"
    assert load_config("configs/tool_arith.yaml", ["rollout.tools=[]"]).rollout.tools == []  # the no-tool baseline


def test_tool_arith_demonstrations_match_the_engine_and_score_correct():
    from rlreason.rewards.routing import Scorer

    task = TASKS.get("tool_arith")({}, seed=0)
    samples = task.eval_samples(8)
    assert all(s.meta["expression"].count("*") == 1 for s in samples)
    demos = [task.demonstration(s) for s in samples]
    for s, d in zip(samples, demos):
        parts = split_outputs(d)
        assert [tool for _, tool in parts] == [False, True, False]
        code = closed_block(parts[0][0])
        assert code == f"print({s.meta['expression']})\n" and str(eval(code[6:-2])) == s.answer  # noqa: S307
        assert parts[1][0] == output_block(s.answer + "\n", 512, after_newline=False)  # what the engine appends
    rollout = Rollout(samples, [Completion(d, [], [], "stop") for d in demos], 1)
    assert Scorer.for_all(task.default_rewards).correct(rollout) == [True] * 8


def test_sft_masks_tool_output_of_demonstrations():
    tok = build_tokenizer()
    task = TASKS.get("tool_arith")({}, seed=0)
    (p, c, m), = make_examples(task, tok, 1)
    _, _, labels = sft_batch([(p, c, m)], tok.pad_token_id)
    kept = tok.decode([t for t, keep in zip(c, m) if not keep])
    assert kept.startswith("\n```output\n") and kept.endswith("\n```\n")
    assert (labels[0, len(p):] == -100).tolist() == [not x for x in m]
    (_, _, m2), = make_examples(task, tok, 1, mask_tool_output=False)
    assert all(m2)


def test_replay_reruns_recorded_calls_and_flags_outputs_that_differ():
    from rlreason.rollout.tools import replay

    run = lambda code: ("ok", str(eval(code[6:-2])) + "\n") if code.startswith("print(") else ("error", "E\n")  # noqa: E731,S307
    honest = "<think>```python\nprint(6*7)\n```\n```output\n42\n```\n</think>\\boxed{42}"
    forged = "<think>```python\nprint(6*7)\n```\n```output\n41\n```\n```python\nx\n```\n```output\nE\n```\n\\boxed{41}"
    assert replay(honest, run) == {"calls": 1, "errors": 0, "timeouts": 0, "mismatches": 0}
    assert replay(forged, run) == {"calls": 2, "errors": 1, "timeouts": 0, "mismatches": 1}
    assert replay("```output\n42\n```\n", run)["calls"] == 0  # an output block with no call before it


def test_score_replay_tools_on_the_command_line(tmp_path, capsys):
    import json

    from rlreason.cli import main

    task = TASKS.get("tool_arith")({}, seed=0)
    s = task.eval_samples(2)
    rows = [{"index": 0, "completion": task.demonstration(s[0])},
            {"index": 1, "completion": task.demonstration(s[1]).replace(f"```output\n{s[1].answer}", "```output\n7")}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["score", "tool_arith", "--completions", str(tmp_path / "c.jsonl"), "--replay-tools",
                 "--out", str(tmp_path / "o.jsonl")]) == 0
    out = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [o["tools"]["mismatches"] for o in out] == [0, 1] and [o["tools"]["calls"] for o in out] == [1, 1]
    assert [o["terms"]["math_answer"] for o in out] == [1.0, 1.0]  # the score itself reads the boxed answer
    assert "replayed 2 tool calls: 0 errors, 0 timeouts, 1 recorded outputs differ" in capsys.readouterr().err


def test_eval_records_count_tool_calls():
    from rlreason.evaluate import eval_metrics, eval_records

    class Engine:
        def generate(self, samples, n, temperature=1.0, top_p=1.0, max_new_tokens=64, greedy=False):
            calls = [[ToolCall("c", "", "ok")], []]
            return Rollout(samples, [Completion("", [1], [0.0], "stop", tool_mask=[0], tool_calls=c) for c in calls], 1)

    samples = [Sample(id=str(i), task="t", prompt="p", answer="1") for i in range(2)]
    records = eval_records(Engine(), samples, lambda r: [True, False], 8)
    assert [r["tool_calls"] for r in records] == [1, 0] and eval_metrics(records)["eval/tool_calls"] == 0.5
