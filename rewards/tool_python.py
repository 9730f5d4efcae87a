"""The `python` tool of tool-integrated rollouts (`rollout.tools: [python]`): a code block run in the sandbox.

Each call runs in a fresh sandbox (`rewards/sandbox.py`, mode "tool": a new interpreter in its own
namespaces, uid, cgroup and seccomp filter, exactly as `code_tests` runs a candidate), so nothing
persists between calls and nothing a call does reaches the trainer. What comes back is the program's
output (stdout, stderr, and an exception's last line), untrusted text that the engine shows the model.

>>> run = python_tool(timeout_s=5, memory_mb=256)
>>> run("print(4821*2746)")
('ok', '13238466\\n')
>>> run("1/0")
('error', 'ZeroDivisionError: division by zero\\n')
"""
from __future__ import annotations

import math
from typing import Callable, Tuple

from rlreason.rewards.sandbox import Job, Limits, SandboxError, run

ToolRun = Callable[[str], Tuple[str, str]]  # code -> (status ok | error | timeout, output text)


def python_tool(timeout_s: float, memory_mb: int) -> ToolRun:
    """A function that runs one code block in a fresh sandbox: (status, output). A wall-clock or CPU
    time-out is "timeout"; an exception, a non-zero exit, a limit that killed the program or a sandbox that
    could not start is "error" (with a one-line reason as output when the program printed nothing)."""
    limits = Limits(timeout_s=float(timeout_s), cpu_s=max(1, math.ceil(timeout_s)), memory_mb=int(memory_mb))

    def call(code: str) -> Tuple[str, str]:
        try:
            r = run(Job(code=code, mode="tool", limits=limits))
        except SandboxError as e:
            return "error", f"the sandbox could not run the code: {e}"[:300]
        if r.status == "timeout":
            return "timeout", f"TimeoutError: the code ran past {timeout_s:g} s and was stopped\n"
        if r.status == "violation":
            return "error", f"the code was stopped: {r.detail}"[:300] + "\n"
        return ("ok" if r.passed else "error"), r.detail

    return call
