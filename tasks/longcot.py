"""Long chain-of-thought arithmetic: the long-CoT lab's task (`longcot_arith`).

A problem is a chain of multi-digit numbers joined by `+ - *` (usual
precedence: `*` first, then `+`/`-` left to right), e.g. `4821-2746+395`. The
demonstration works each binary operation digit by digit, one line per
operation, inside <think>...</think> and then boxes the value:

    4821-2746: 11-6=5 b1, 12-1-4=7 b1, 8-1-7=0, 4-2=2, so 4821-2746=2075
    check 2075+2746=4821 ok

Addition goes column by column with carries (`c1`), subtraction with borrows
(`b1`: the column took 10 from the next), multiplication by partial products
(one per digit of the multiplier, each worked digit by digit, shifted, then
added by columns). A step with a negative operand or result is first
rewritten into an unsigned one (`2746-4821=-(4821-2746)`).

Style, like the long answers of R1-style reasoners: with probability
`verify_rate` a step is followed by a check by the inverse operation
(`check 2075+2746=4821 ok`), and with probability `error_rate` one of its
digit operations is first written wrong and corrected on the spot
(`8+7=14 wait, 8+7=15 not 14, c1`). Both are redundancy: dropping them leaves
a correct solution. The boxed answer is always the true value. The style is
drawn from a generator seeded by the problem text, so a sample's
demonstration is fixed. Every character is one the tiny character-level
tokenizer knows (digits, `+-*/=(),:`, space, newline, lowercase letters).

Splits: held out when crc32 of the problem text is divisible by
`heldout_mod`, so train and held-out problems are disjoint for every seed.
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import List, Tuple

from rlreason.types import Sample

from .arithmetic import Arithmetic, ArithmeticParams, reduce_chain
from .base import TASKS

Column = Tuple[str, int, str]  # (what is computed, its value, what follows: carry/borrow note)


@dataclass
class LongCotParams(ArithmeticParams):
    """Arithmetic's params with longer defaults, plus the demonstration style."""

    min_digits: int = 3
    max_digits: int = 4
    min_operands: int = 3
    max_operands: int = 4
    verify_rate: float = 0.5
    error_rate: float = 0.2

    def check(self) -> None:
        super().check()
        for name in ("verify_rate", "error_rate"):
            v = getattr(self, name)
            if type(v) not in (int, float) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1] (got {v!r})")


def _digits(n: int, width: int) -> List[int]:
    """Digits of n >= 0, least significant first, zero-padded to `width`."""
    return [(n // 10**i) % 10 for i in range(width)]


def add_columns(a: int, b: int) -> List[Column]:
    """Column addition of a, b >= 0: `8+7=15 c1`, the next column adds the carry (`4+2+1=7`)."""
    width = max(len(str(a)), len(str(b)))
    cols, carry = [], 0
    for i, (x, y) in enumerate(zip(_digits(a, width), _digits(b, width))):
        s = x + y + carry
        expr = f"{x}+{y}" + ("+1" if carry else "")
        carry = s // 10 if i < width - 1 else 0
        cols.append((expr, s, " c1" if carry else ""))
    return cols


def sub_columns(a: int, b: int) -> List[Column]:
    """Column subtraction of a >= b >= 0: a column that borrows reads `12-1-4=7 b1` (10+2, minus the
    borrow it gave the previous column, minus 4; b1: it took 10 from the next column)."""
    width = len(str(a))
    cols, borrow = [], 0
    for x, y in zip(_digits(a, width), _digits(b, width)):
        take = 1 if x - borrow < y else 0
        top = x + 10 * take
        expr = f"{top}" + ("-1" if borrow else "") + f"-{y}"
        cols.append((expr, top - borrow - y, " b1" if take else ""))
        borrow = take
    return cols


def mul_columns(a: int, d: int) -> List[Column]:
    """a >= 0 times one digit d, digit by digit: `7*6=42 c4`, then `4*6+4=28 c2`; the last column keeps its carry."""
    da = _digits(a, len(str(a)))
    cols, carry = [], 0
    for i, x in enumerate(da):
        s = x * d + carry
        expr = f"{x}*{d}" + (f"+{carry}" if carry else "")
        carry = s // 10 if i < len(da) - 1 else 0
        cols.append((expr, s, f" c{carry}" if carry else ""))
    return cols


class Writer:
    """Renders the worked steps; `rng`, seeded by the problem, decides where it checks and where it errs."""

    def __init__(self, rng: random.Random, verify_rate: float, error_rate: float):
        self.rng, self.verify_rate, self.error_rate = rng, verify_rate, error_rate

    def columns(self, cols: List[Column]) -> str:
        """The digit operations, one of them first written wrong and corrected with probability error_rate."""
        err, where, delta = self.rng.random() < self.error_rate, self.rng.randrange(len(cols)), self.rng.choice((-1, 1))
        parts = []
        for i, (expr, val, note) in enumerate(cols):
            if err and i == where:
                wrong = val + delta if val + delta >= 0 else val + 1
                parts.append(f"{expr}={wrong} wait, {expr}={val} not {wrong}" + ("," + note if note else ""))
            else:
                parts.append(f"{expr}={val}{note}")
        return ", ".join(parts)

    def check(self, line: str) -> List[str]:
        """`[line]` with probability verify_rate, else `[]` (one draw either way)."""
        return [line] if self.rng.random() < self.verify_rate else []

    def unsigned(self, a: int, op: str, b: int) -> List[str]:
        """Lines working a+b, a-b (a >= b) or a*b on a, b >= 0 digit by digit, ending `so a op b=value`."""
        if op == "+":
            r = a + b
            return [f"{a}+{b}: {self.columns(add_columns(a, b))}, so {a}+{b}={r}"] + self.check(f"check {r}-{b}={a} ok")
        if op == "-":
            r = a - b
            return [f"{a}-{b}: {self.columns(sub_columns(a, b))}, so {a}-{b}={r}"] + self.check(f"check {r}+{b}={a} ok")
        return self.multiply(a, b)

    def multiply(self, a: int, b: int) -> List[str]:
        """Partial products, one per nonzero digit of b (shifted), added up by columns."""
        r, lines, total = a * b, [f"{a}*{b}: one partial product per digit of {b}"], None
        for i, d in enumerate(_digits(b, len(str(b)))):
            if d == 0 and (i > 0 or b > 0):
                continue
            part = a * d
            lines.append(f"{a}*{d}: {self.columns(mul_columns(a, d))}, so {a}*{d}={part}")
            if i:
                lines.append(f"shift {i}: {a}*{d * 10**i}={part * 10**i}")
                part *= 10**i
            if total is not None:
                lines.append(f"{total}+{part}: {self.columns(add_columns(total, part))}, so {total}+{part}={total + part}")
                part += total
            total = part
        lines.append(f"so {a}*{b}={r}")
        return lines + (self.check(f"check {r}/{b}={a} ok") if b else [])

    def step(self, a: int, op: str, b: int) -> List[str]:
        """One binary step (b >= 0; a may be negative), rewritten to an unsigned one when needed."""
        if op == "*" or (a >= 0 and (op == "+" or a >= b)):
            return self.unsigned(a, op, b)
        val = a + b if op == "+" else a - b
        if a >= 0:  # a - b with a < b
            head, (x, o, y) = f"{a}-{b}=-({b}-{a})", (b, "-", a)
        elif op == "-":  # -x - b
            head, (x, o, y) = f"{a}-{b}=-({-a}+{b})", (-a, "+", b)
        elif b >= -a:  # -x + b, b >= x
            head, (x, o, y) = f"{a}+{b}={b}-{-a}", (b, "-", -a)
        else:  # -x + b, b < x
            head, (x, o, y) = f"{a}+{b}=-({-a}-{b})", (-a, "-", b)
        return [head] + self.unsigned(x, o, y) + [f"so {a}{op}{b}={val}"]


@TASKS.register("longcot_arith")
class LongCotArith(Arithmetic):
    """Long chained multi-digit arithmetic worked digit by digit, with checks and corrected slips (long CoT)."""

    name = "longcot_arith"
    Params = LongCotParams
    EVAL_SEED = 7654321

    @staticmethod
    def reduce(nums: List[int], ops: List[str]) -> Tuple[List[List], int]:
        return reduce_chain(nums, ops)

    @staticmethod
    def difficulty(text: str, steps: list) -> int:
        return sum(c.isdigit() for c in text) * len(steps)

    def demonstration(self, sample: Sample) -> str:
        """The worked solution: every step digit by digit, with checks and corrected slips per the style params."""
        text = sample.meta["expression"]
        w = Writer(random.Random(zlib.crc32(text.encode())), self.p.verify_rate, self.p.error_rate)
        lines = [line for a, op, b, _ in sample.meta["steps"] for line in w.step(a, op, b)]
        if len(sample.meta["steps"]) > 1:
            lines.append(f"so {text}={sample.answer}")
        return "<think>" + "\n".join(lines) + "</think>\\boxed{" + sample.answer + "}"
