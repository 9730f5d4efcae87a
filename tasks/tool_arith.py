"""Multiplication a tool helps with: the tool-integrated reasoning lab's task (`tool_arith`).

A problem is a product of multi-digit numbers, `4821*2746` by default (3-4 digits, 2 operands): too
long for the ~1M-parameter tiny model to do reliably in its head, one line of Python with a tool. The
demonstration calls the `python` tool (`rollout.tools: [python]`, docs/tools.md) and boxes its output:

    <think>```python
    print(4821*2746)
    ```
    ```output
    13238466
    ```
    </think>\\boxed{13238466}

The output block is exactly what the engine appends after the call (`rlreason.rollout.tools.output_block`,
checked by a test), so SFT on these demonstrations matches what RL rollouts look like; `rlreason sft`
masks the output block out of the SFT loss (`mask_tool_output`), as RL masks tool tokens. Rewards and
splits are arithmetic's: `math_answer` on the boxed value (+ `format`), held out by crc32 of the text.
"""
from __future__ import annotations

from dataclasses import dataclass

from rlreason.types import Sample

from .arithmetic import Arithmetic, ArithmeticParams
from .base import TASKS


@dataclass
class ToolArithParams(ArithmeticParams):
    """Arithmetic's params with products of two 3-4 digit numbers by default."""

    min_digits: int = 3
    max_digits: int = 4
    min_operands: int = 2
    max_operands: int = 2
    operators: str = "*"


@TASKS.register("tool_arith")
class ToolArith(Arithmetic):
    """Multi-digit products whose demonstrations compute them with the python tool."""

    name = "tool_arith"
    Params = ToolArithParams
    tools = ("python",)  # the tools its demonstrations call (SFT's eval attaches them)

    def demonstration(self, sample: Sample) -> str:
        """A python call that prints the value, the output block the engine appends, the boxed value."""
        expr = sample.meta["expression"]
        return (f"<think>```python\nprint({expr})\n```\n```output\n{sample.answer}\n```\n</think>"
                f"\\boxed{{{sample.answer}}}")
