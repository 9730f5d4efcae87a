"""Tool-integrated rollouts (`rollout.tools`): the model runs Python mid-thought, both engines share this loop.

A sample generates until it closes a code block

    ```python
    print(4821*2746)
    ```

and then pauses: the code runs in the sandbox (a fresh interpreter per call: nothing persists between
calls, so a model that needs earlier values writes them again), and its output is appended as

    ```output
    13238466
    ```

tokenised once and concatenated to the sampled ids; generation continues from the exact ids (prompt +
everything so far), never from re-tokenised text, up to `rollout.max_tool_calls` calls per sample. The
output tokens are marked in `Completion.tool_mask`: they have no log-prob (0.0 is stored), and the loss,
KL, entropy and every token count skip them; they do count toward `rollout.max_new_tokens`.

An engine supplies one step function, `step(traces) -> [(ids, logprobs, reason)]`: continue each trace
from `trace.context()` for at most `trace.left()` tokens, ending at an EOS or stop string ("stop"), at the
budget ("length"), or at a code fence ("pause") when `tools.may_call(trace)`. The HF engine pauses only
where `tools.closes_block` says a block was just closed (checked when a sampled token holds a backtick);
vLLM stops at every fence string and this loop resumes the ones that closed no block.

One generate() call (one `multi_turn`) spends at most `rollout.tool_step_budget_s` of wall time in tools
(`ToolClock`): once it is spent, calls not yet started are not run and fail at once as timeouts (`BUDGET_OUTPUT`,
counted in `rollout/tool_budget_exhausted`); calls already running finish within `rollout.tool_timeout_s`.
"""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from rlreason.types import Completion, ToolCall

FENCE = "```"
OPEN = "```python"
Piece = Tuple[List[int], List[float], str]  # one engine step of a trace: new ids, their log-probs, why it ended
ToolRun = Callable[[str], Tuple[str, str]]  # code -> (status ok | error | timeout, output)
BUDGET_OUTPUT = "TimeoutError: this step's tool time (rollout.tool_step_budget_s = {:g} s) is spent; the code was not run\n"


def closed_block(text: str) -> Optional[str]:
    """The code of the first ```python block of `text` if its closing fence has been written, else None.

    >>> closed_block("<think>```python\\nprint(6*7)\\n```")
    'print(6*7)\\n'
    >>> closed_block("<think>```python\\nprint(6*7)") is None
    True
    """
    start = text.find(OPEN)
    if start < 0:
        return None
    body = text.find("\n", start + len(OPEN))
    if body < 0:
        return None
    end = text.find(FENCE, body + 1)
    return None if end < 0 else text[body + 1:end]


def output_block(output: str, cap: int, after_newline: bool) -> str:
    """The text appended after a call: an ```output block holding at most `cap` characters of `output`.

    >>> output_block("13238466\\n", 100, False)
    '\\n```output\\n13238466\\n```\\n'
    >>> output_block("x" * 10, 4, True)
    '```output\\nxxxx\\n[output truncated: 10 characters]\\n```\\n'
    """
    body = output.rstrip("\n")
    if len(body) > cap:
        body = f"{body[:cap]}\n[output truncated: {len(body)} characters]"
    return ("" if after_newline else "\n") + f"```output\n{body}\n```\n"


OUTPUT_BLOCK = re.compile(r"\n?```output\n.*?\n```\n", re.DOTALL)  # what `output_block` writes


def split_outputs(text: str) -> List[Tuple[str, bool]]:
    """`text` as consecutive (piece, is_tool_output) parts, the output blocks `output_block` writes apart.

    >>> split_outputs("a```\n```output\n42\n```\nb")
    [('a```', False), ('\n```output\n42\n```\n', True), ('b', False)]
    """
    parts, at = [], 0
    for m in OUTPUT_BLOCK.finditer(text):
        parts += [(text[at:m.start()], False), (m.group(0), True)]
        at = m.end()
    return [p for p in parts + [(text[at:], False)] if p[0]]


@dataclass
class Trace:
    """One sample's completion under construction: sampled ids with tool outputs spliced in."""

    prompt: List[int]  # [Lp]
    budget: int  # rollout.max_new_tokens: sampled + tool-output tokens
    ids: List[int] = field(default_factory=list)  # [L]
    logprobs: List[float] = field(default_factory=list)  # [L] 0.0 on tool output
    tool_mask: List[int] = field(default_factory=list)  # [L] 1 on tool output
    calls: List[ToolCall] = field(default_factory=list)
    segment: int = 0  # where the text after the last tool output starts in `ids`
    finish: Optional[str] = None  # "stop" | "length" once done

    def context(self) -> List[int]:
        """What the engine continues from: the prompt and every id so far, exactly."""
        return self.prompt + self.ids

    def left(self) -> int:
        return self.budget - len(self.ids)

    def add(self, ids: Sequence[int], logprobs: Sequence[float], tool: bool) -> None:
        self.ids += list(ids)
        self.logprobs += [0.0] * len(ids) if tool else list(logprobs)
        self.tool_mask += [int(tool)] * len(ids)

    def completion(self, tokenizer, stop_ids: Sequence[int]) -> Completion:
        """The engine-rule completion: an EOS that ended it stays in token_ids and leaves the text."""
        eos = self.finish == "stop" and bool(self.ids) and self.ids[-1] in stop_ids and not self.tool_mask[-1]
        text = tokenizer.decode(self.ids[:-1] if eos else self.ids, skip_special_tokens=True)
        return Completion(text=text, token_ids=list(self.ids), logprobs=list(self.logprobs),
                          finish_reason=self.finish or "length", tool_mask=list(self.tool_mask),  # all 0: no call
                          tool_calls=list(self.calls))


class ToolClock:
    """The tool time of one generate() call against a budget in seconds (0 = no limit): wall seconds while any of
    its calls runs. Once spent, a call not yet started is refused (`Tools.call`); calls already running finish
    under their own timeout, so one generate() spends at most budget + rollout.tool_timeout_s in tools."""

    def __init__(self, budget_s: float = 0.0):
        self.budget_s, self.used, self._since = budget_s, 0.0, None

    def spent(self) -> bool:
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.budget_s > 0 and self.used + running >= self.budget_s

    @contextmanager
    def running(self):
        self._since = time.perf_counter()
        try:
            yield
        finally:
            self.used += time.perf_counter() - self._since
            self._since = None


def budget_refused(call: ToolCall) -> bool:
    """Whether `call` was not run because its generate() call's tool time was spent."""
    return call.refused


class Tools:
    """The configured tool (`python`), its limits and the tokenizer the outputs are encoded with once."""

    def __init__(self, tokenizer, run: ToolRun, max_calls: int = 1, output_chars: int = 512, workers: int = 2,
                 step_budget_s: float = 0.0):
        self.tok, self.run, self.max_calls = tokenizer, run, max_calls
        self.output_chars, self.workers, self.step_budget_s = output_chars, max(1, workers), step_budget_s
        vocab = tokenizer.get_vocab()  # ids whose token holds a backtick: only they can close a fence
        self.fence_ids = frozenset(i for t, i in vocab.items() if "`" in tokenizer.convert_tokens_to_string([t]))

    def may_call(self, trace: Trace) -> bool:
        return len(trace.calls) < self.max_calls

    def closes_block(self, trace: Trace, new_ids: Sequence[int]) -> bool:
        """Whether `new_ids` (sampled after the trace's ids; the last one just now) close a code block."""
        if not new_ids or new_ids[-1] not in self.fence_ids:
            return False
        return self.code(list(trace.ids[trace.segment:]) + list(new_ids)) is not None

    def code(self, segment_ids: Sequence[int]) -> Optional[str]:
        return closed_block(self.tok.decode(segment_ids, skip_special_tokens=True))

    def call(self, codes: List[str], clock: Optional[ToolClock] = None) -> List[ToolCall]:
        """Run each code block (at most `workers` sandboxes at once); the batch's wall time is shared out among
        the calls that ran. A call that would start once `clock` is spent is not run: a timeout, 0 seconds."""
        if not codes:
            return []
        clock = clock or ToolClock()
        refused = ("timeout", BUDGET_OUTPUT.format(clock.budget_s), False)
        one = lambda code: refused if clock.spent() else (*self.run(code), True)  # noqa: E731
        t0 = time.perf_counter()
        with clock.running(), ThreadPoolExecutor(max_workers=min(self.workers, len(codes))) as pool:
            results = list(pool.map(one, codes))
        share = (time.perf_counter() - t0) / max(1, sum(ran for *_, ran in results))
        return [ToolCall(code, output, status, share if ran else 0.0, refused=not ran)
                for code, (status, output, ran) in zip(codes, results)]

    def output_ids(self, trace: Trace, call: ToolCall) -> List[int]:
        """The output block's ids, tokenised once, cut to the trace's remaining budget."""
        seg = self.tok.decode(trace.ids[trace.segment:], skip_special_tokens=True)
        text = output_block(call.output, self.output_chars, seg.endswith("\n"))
        return self.tok(text, add_special_tokens=False).input_ids[: trace.left()]


def multi_turn(prompts: List[List[int]], budget: int, step: Callable[[List[Trace]], List[Piece]],
               tools: Tools) -> List[Trace]:
    """Generate every prompt's completion, pausing for tool calls (module docstring); traces in order."""
    traces = [Trace(list(p), budget) for p in prompts]
    active, clock = list(traces), ToolClock(tools.step_budget_s)  # this generate() call's tool time
    while active:
        paused: List[Tuple[Trace, str]] = []
        for t, (ids, logprobs, reason) in zip(active, step(active)):
            t.add(ids, logprobs, tool=False)
            code = tools.code(t.ids[t.segment:]) if reason == "pause" and tools.may_call(t) else None
            if code is not None:
                paused.append((t, code))
            elif reason != "pause":  # a fence that closed no block (vLLM) just resumes
                t.finish = reason
        for (t, _), call in zip(paused, tools.call([c for _, c in paused], clock)):
            t.add(tools.output_ids(t, call), [], tool=True)
            t.calls.append(call)
            t.segment = len(t.ids)
        for t in active:
            if t.finish is None and t.left() <= 0:
                t.finish = "length"
        active = [t for t in active if t.finish is None]
    return traces


def tool_metrics(completions: Sequence[Completion]) -> Dict[str, float]:
    """rollout/tool_calls (per sample), rollout/tool_error_rate and rollout/tool_timeout_rate (per call),
    rollout/tool_budget_exhausted (calls not run: the step's tool time was spent; also timeouts), perf/tool_s
    (wall seconds in tools); {} when tools were off (no completion carries a tool mask).
    Example: 4 samples, calls ok, ok, timeout -> tool_calls 0.75, error_rate 0, timeout_rate 1/3."""
    if not any(x.tool_mask for x in completions):
        return {}
    calls = [c for x in completions for c in x.tool_calls]
    n = max(1, len(calls))
    return {"rollout/tool_calls": len(calls) / max(1, len(completions)),
            "rollout/tool_error_rate": sum(c.status == "error" for c in calls) / n,
            "rollout/tool_timeout_rate": sum(c.status == "timeout" for c in calls) / n,
            "rollout/tool_budget_exhausted": sum(budget_refused(c) for c in calls),
            "perf/tool_s": sum(c.seconds for c in calls)}


def replay(text: str, run: ToolRun, cap: int = 512) -> Dict[str, int]:
    """Re-run the tool calls recorded in a completion's text (`rlreason score --replay-tools`): each python
    block followed by an output block is run again; `mismatches` counts the recorded output blocks that differ
    from the replayed ones (shown with the same `cap`): an output the model wrote itself, or a run elsewhere.
    Example: "```python\nprint(2)\n```\n```output\n3\n```\n" -> {"calls": 1, ..., "mismatches": 1}."""
    counts = {"calls": 0, "errors": 0, "timeouts": 0, "mismatches": 0}
    segment = ""
    for piece, is_output in split_outputs(text):
        code = closed_block(segment) if is_output else None
        if code is None:
            segment = "" if is_output else segment + piece
            continue
        status, output = run(code)
        counts["calls"] += 1
        counts["errors"] += status == "error"
        counts["timeouts"] += status == "timeout"
        counts["mismatches"] += output_block(output, cap, segment.endswith("\n")) != piece
        segment = ""
    return counts
