"""Procedural arithmetic with worked chain-of-thought solutions: the embedded default task.

A problem is an expression such as `37+5-18`, evaluated with the usual
precedence (`*` before `+`/`-`). The demonstration reduces it one binary
operation at a time inside <think>...</think> and then boxes the result:

    37+5-18  ->  <think>37+5=42,42-18=24</think>\\boxed{24}

Splits: a problem is held out when crc32 of its text is divisible by
`heldout_mod`, so train and held-out problems are disjoint for every seed and
every consumer (SFT demonstrations, RL prompts, evaluation).
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Iterator, List, Tuple

from rlreason.types import Sample

from .base import TASKS
from .base import Task


@dataclass
class ArithmeticParams:
    min_digits: int = 1
    max_digits: int = 2
    min_operands: int = 2
    max_operands: int = 3
    operators: str = "+-"
    heldout_mod: int = 10

    def check(self) -> None:
        for name in ("min_digits", "max_digits", "min_operands", "max_operands", "heldout_mod"):
            if type(getattr(self, name)) is not int:
                raise ValueError(f"{name} must be an integer (got {getattr(self, name)!r})")
        if not isinstance(self.operators, str) or not self.operators or set(self.operators) - set("+-*"):
            raise ValueError(f"operators must be a non-empty subset of '+-*' such as '+-' (got {self.operators!r})")
        if not 1 <= self.min_digits <= self.max_digits <= 9:
            raise ValueError("min_digits, max_digits: need 1 <= min_digits <= max_digits <= 9")
        if not 2 <= self.min_operands <= self.max_operands <= 8:
            raise ValueError("min_operands, max_operands: need 2 <= min_operands <= max_operands <= 8")
        if self.heldout_mod < 2:
            raise ValueError("heldout_mod must be >= 2")


def reduce_chain(nums: List[int], ops: List[str]) -> Tuple[List[List], int]:
    """Reduce `*` first, then `+`/`-` left to right: the steps `[a, op, b, value]` and the final value.

    >>> reduce_chain([2, 3, 4], ["+", "*"])
    ([[3, '*', 4, 12], [2, '+', 12, 14]], 14)
    """
    nums, ops, steps = list(nums), list(ops), []
    for level in ("*", "+-"):
        i = 0
        while i < len(ops):
            if ops[i] in level:
                a, b, op = nums[i], nums[i + 1], ops[i]
                val = a * b if op == "*" else a + b if op == "+" else a - b
                steps.append([a, op, b, val])
                nums[i : i + 2] = [val]
                del ops[i]
            else:
                i += 1
    return steps, nums[0]


@TASKS.register("arithmetic")
class Arithmetic(Task):
    """Procedural +,-,* expressions with configurable digits/operands; worked CoT demonstrations."""

    name = "arithmetic"
    Params = ArithmeticParams
    default_rewards = [{"name": "math_answer", "weight": 1.0}, {"name": "format", "weight": 0.1}]
    EVAL_SEED = 1234567  # the held-out stream's seed: the same problems for every run seed

    @staticmethod
    def reduce(nums: List[int], ops: List[str]) -> Tuple[list, int]:
        """(the worked steps, the value) of nums[0] ops[0] nums[1] ...: here "a+b=c" strings; a subclass works
        them its own way."""
        steps, value = reduce_chain(nums, ops)
        return [f"{a}{op}{b}={val}" for a, op, b, val in steps], value

    @staticmethod
    def difficulty(text: str, steps: list) -> int:
        return len(steps) + sum(c.isdigit() for c in text)

    def _problem(self, rng: random.Random) -> Tuple[str, int, list]:
        p = self.p
        k = rng.randint(p.min_operands, p.max_operands)
        nums = []
        for _ in range(k):
            d = rng.randint(p.min_digits, p.max_digits)
            nums.append(rng.randint(0 if d == 1 else 10 ** (d - 1), 10**d - 1))
        ops = [rng.choice(p.operators) for _ in range(k - 1)]
        text = "".join(f"{n}{o}" for n, o in zip(nums, ops)) + str(nums[-1])
        steps, value = self.reduce(nums, ops)
        return text, value, steps

    def is_heldout(self, text: str) -> bool:
        return zlib.crc32(text.encode()) % self.p.heldout_mod == 0

    def _sample(self, text: str, value: int, steps: list, split: str, idx: int) -> Sample:
        return Sample(
            id=f"{self.name}/{split}/{idx}",
            task=self.name,
            messages=[{"role": "user", "content": text}],
            answer=str(value),
            meta={"expression": text, "steps": steps, "difficulty": self.difficulty(text, steps)},
        )

    def _stream(self, heldout: bool, seed: int) -> Iterator[Sample]:
        rng = random.Random(seed)
        idx = 0
        while True:
            text, value, steps = self._problem(rng)
            if self.is_heldout(text) == heldout:
                yield self._sample(text, value, steps, "heldout" if heldout else "train", idx)
                idx += 1

    def train_samples(self) -> Iterator[Sample]:
        """Endless stream of training-split problems (repeats possible), deterministic by seed."""
        return self._stream(False, self.seed)

    def eval_samples(self, n: int) -> List[Sample]:
        """The first n distinct held-out problems, the same for every seed (fewer if the problem space is small)."""
        out: List[Sample] = []
        seen, misses = set(), 0
        stream = self._stream(True, self.EVAL_SEED)
        while len(out) < n and misses < 2000:  # 2000 repeats in a row: the held-out space is exhausted
            s = next(stream)
            if s.meta["expression"] in seen:
                misses += 1
                continue
            seen.add(s.meta["expression"])
            out.append(s)
            misses = 0
        return out

    def demonstration(self, sample: Sample) -> str:
        """The worked solution the cold-start model is fine-tuned on."""
        return "<think>" + ",".join(sample.meta["steps"]) + "</think>\\boxed{" + sample.answer + "}"
