"""rollout.tool_step_budget_s: one generate() call's tool time is bounded (rlreason/rollout/tools.py, `ToolClock`).

Without it nothing bounds a step's tool time: 128 samples x 4 calls x tool_timeout_s 5 s / 2 workers is about 21
minutes. With it, calls that would start once the budget is spent fail at once as timeouts and the samples go on."""
from __future__ import annotations

import re
import time

import pytest

from rlreason.build import rollout_tools
from rlreason.config_load import load_config
from rlreason.errors import ConfigError
from rlreason.rewards.tool_python import python_tool
from rlreason.rollout.tools import BUDGET_OUTPUT, ToolClock, Tools, budget_refused, multi_turn, tool_metrics
from rlreason.tinymodel import build_tokenizer

BLOCK = "```python\nwhile True:\n    pass\n```"  # hostile: loops until the sandbox stops it


def _script(tok, calls_per_trace: int):
    """A step function: every trace writes `calls_per_trace` looping code blocks (pausing after each), then stops."""
    left = {}

    def step(traces):
        out = []
        for t in traces:
            n = left.setdefault(id(t), calls_per_trace)
            left[id(t)] = n - 1
            text, reason = (BLOCK, "pause") if n > 0 else ("\\boxed{1}", "stop")
            ids = tok(text, add_special_tokens=False).input_ids
            out.append((ids, [-0.5] * len(ids), reason))
        return out
    return step


def test_hostile_calls_cannot_spend_more_than_the_budget_plus_one_timeout():
    """6 samples x 2 calls of `while True: pass`, 1 s timeout, 2 workers: 12 s / 2 = 6 s of tool time unbounded.
    Budget 1 s: the first 2 calls run (timing out at 1 s), the 10 others start after the budget is spent and
    are refused at once; every sample still finishes, each refused call leaving a timeout output block."""
    tok = build_tokenizer()
    tools = Tools(tok, python_tool(1, 256), max_calls=4, workers=2, step_budget_s=1.0)
    t0 = time.perf_counter()
    traces = multi_turn([[i] for i in range(6)], 400, _script(tok, 2), tools)
    wall = time.perf_counter() - t0
    calls = [c for t in traces for c in t.calls]
    assert len(calls) == 12 and all(c.status == "timeout" for c in calls)
    refused = [c for c in calls if budget_refused(c)]
    assert len(refused) >= 8 and all(c.seconds == 0.0 for c in refused)  # at most 2 batches of 2 started in time
    assert wall < 1.0 + 1.0 + 1.5, wall  # budget + one tool_timeout_s + sandbox start-up slack; unbounded: >= 6 s
    assert all(t.finish == "stop" for t in traces)  # the samples went on after the refused calls
    out = tok.decode(traces[-1].ids)
    assert BUDGET_OUTPUT.format(1.0).strip() in out
    m = tool_metrics([t.completion(tok, [tok.eos_token_id]) for t in traces])
    assert m["rollout/tool_budget_exhausted"] == len(refused) and m["rollout/tool_timeout_rate"] == 1.0


def test_the_budget_is_per_generate_call_and_zero_means_no_limit():
    """A fake tool that sleeps 0.15 s: budget 0.2 s lets the first batches run and refuses the rest; the next
    multi_turn (the next generate()) starts with a fresh clock; budget 0 refuses nothing."""
    tok = build_tokenizer()

    def nap(code):
        time.sleep(0.15)
        return "ok", "1\n"
    tools = Tools(tok, nap, max_calls=4, workers=2, step_budget_s=0.2)
    for _ in range(2):  # two generate() calls, the same numbers: the clock does not carry over
        calls = [c for t in multi_turn([[i] for i in range(8)], 400, _script(tok, 1), tools) for c in t.calls]
        ran = [c for c in calls if not budget_refused(c)]
        assert 2 <= len(ran) <= 4 and len(calls) == 8 and all(c.status == "ok" and c.seconds > 0 for c in ran)
    unlimited = Tools(tok, nap, max_calls=4, workers=2, step_budget_s=0.0)
    calls = [c for t in multi_turn([[i] for i in range(8)], 400, _script(tok, 1), unlimited) for c in t.calls]
    assert not any(budget_refused(c) for c in calls) and len(calls) == 8


def test_tool_clock_counts_only_time_in_tools():
    clock = ToolClock(0.05)
    time.sleep(0.08)  # time outside tools does not count
    assert not clock.spent()
    with clock.running():
        time.sleep(0.06)
        assert clock.spent()  # spent while a batch is still running
    assert clock.spent() and clock.used >= 0.05
    assert not ToolClock(0.0).spent()


def test_config_reaches_the_tools_and_bad_values_are_named():
    tok = build_tokenizer()
    cfg = load_config(None, ["rollout.tools=[python]", "rollout.tool_step_budget_s=7.5"])
    assert rollout_tools(cfg.rollout, tok).step_budget_s == 7.5
    assert load_config(None, []).rollout.tool_step_budget_s == 120.0
    with pytest.raises(ConfigError, match=re.escape("rollout.tool_step_budget_s: must be >= 0 (0 = no limit)")):
        load_config(None, ["rollout.tools=[python]", "rollout.tool_step_budget_s=-1"])
