"""Final-answer correctness for math problems, checked with math-verify.

The answer is the content of the last `\\boxed{...}` (or `\\fbox{...}`) in the
completion, or, as a fallback, the last number in the text. Plain integers are
compared directly (the hot path of the arithmetic task); anything else goes
through math-verify (Kydlíček et al., HuggingFace, 2025), which parses LaTeX or
plain expressions into sympy and compares them symbolically and numerically.

math-verify runs in worker processes (`rewards/pool.py`) with a hard wall-clock
timeout that this project enforces by killing the worker: its own timeout uses
`signal.alarm`, which raises outside the main thread. A pathological answer
therefore costs at most `timeout_s`, scores `wrong` and is counted as `timeouts`.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Tuple, Union

from rlreason.rewards.terms import REWARDS, RewardError
from rlreason.rewards.pool import WorkerPool
from rlreason.types import RewardOutput, Rollout

FALLBACKS = ("none", "last_number", "answer_line")

# Default hard wall-clock limit for one math-verify check (the worker is killed after it).
TIMEOUT_S = 5.0
# Longer answers are never sent to sympy (they score as not equivalent).
MAX_ANSWER_CHARS = 1000

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
# The last number: thousands groups (1,234.5), plain (12, -3.5) or bare decimals (.5). A minus
# sign counts only when it does not follow a word character or ')' ("5-3" ends in 3, not -3).
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
_INT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)")
_FRACTION = re.compile(r"(?P<sign>[+-]?)(?:(?P<dec>\d+\.\d*|\.\d+|\d+)"
                       r"|\\[dt]?frac\{(?P<fn>\d+)\}\{(?P<fd>\d+)\}|(?P<sn>\d+)/(?P<sd>\d+))")
# "The answer is 3/4." / "Answer: x = 2": the rest of that line, without a final period.
_ANSWER_LINE = re.compile(r"(?:answer\s*(?:is|:)|answer\s+is\s*:)\s*(.+?)\s*\.?\s*$", re.I | re.M)


def last_boxed(text: str) -> Optional[str]:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` with balanced braces, or None.

    >>> last_boxed(r"try \\boxed{1}, then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    """
    starts = {m.end(): None for m in _BOX.finditer(text)}  # position after each box's opening brace
    if not starts:
        return None
    open_boxes: List[tuple] = []  # (start, brace depth inside the box); depths increase up the stack
    best, depth = None, 0
    for j in range(min(starts) - 1, len(text)):  # one pass: linear however many boxes are left unclosed
        ch = text[j]
        if ch == "{":
            depth += 1
            if j + 1 in starts:
                open_boxes.append((j + 1, depth))
        elif ch == "}":
            if open_boxes and open_boxes[-1][1] == depth:
                start = open_boxes.pop()[0]
                if best is None or start > best[0]:
                    best = (start, j)
            depth -= 1
    # the closed box that starts last: an unclosed last box (truncation) falls back to an earlier one
    return text[best[0]:best[1]].strip() if best else None


def _fallback(text: str, how: str) -> Optional[str]:
    if how == "last_number":
        numbers = _NUMBER.findall(text)
        return numbers[-1].replace(",", "") if numbers else None
    if how == "answer_line":
        lines = _ANSWER_LINE.findall(text)
        return lines[-1].strip("$ ") if lines else None
    return None


def _fallbacks(fallback: Union[str, Sequence[str]]) -> List[str]:
    chain = [fallback] if isinstance(fallback, str) else list(fallback)
    for how in chain:
        if how not in FALLBACKS:
            raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)} (or a list of them), got {how!r}")
    return chain


def extract_answer(text: str, fallback: Union[str, Sequence[str]] = "last_number") -> Optional[str]:
    """The final answer in `text`: the last boxed content, else the first fallback that finds one:
    "last_number" (thousands separators removed), "answer_line" (the rest of the last line saying
    "answer is ..." / "Answer: ..."), "none"; `fallback` is one name or a list tried in order.

    >>> extract_answer(r"so \\boxed{132}."), extract_answer("it is 1,234."), extract_answer("x", "none")
    ('132', '1234', None)
    >>> extract_answer("The answer is 3/4.", ["answer_line", "last_number"])
    '3/4'
    """
    chain = _fallbacks(fallback)
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for how in chain:
        found = _fallback(text, how)
        if found:
            return found
    return None


def _as_int(s: str) -> Optional[int]:
    """`s` as an int when it is a plain integer (spaces and thousands commas allowed), else None."""
    s = s.replace(" ", "").replace("{,}", ",")
    return int(s.replace(",", "")) if _INT.fullmatch(s) else None


def _as_fraction(s: str) -> Optional[Fraction]:
    """`s` as an exact rational when it is a plain decimal, `a/b` or `\\frac{a}{b}` (signed), else None.

    >>> _as_fraction("2.50"), _as_fraction("-\\\\dfrac{3}{4}"), _as_fraction("x")
    (Fraction(5, 2), Fraction(-3, 4), None)
    """
    m = _FRACTION.fullmatch(s.replace(" ", ""))
    if not m:
        return None
    sign = -1 if m.group("sign") == "-" else 1
    if m.group("dec") is not None:
        return sign * Fraction(m.group("dec"))
    num, den = (m.group("fn"), m.group("fd")) if m.group("fn") is not None else (m.group("sn"), m.group("sd"))
    return sign * Fraction(int(num), int(den)) if int(den) != 0 else None


_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_math_worker.py")
_POOLS: Dict[Tuple[int, float], WorkerPool] = {}
_CACHE: "OrderedDict[Tuple[str, str], bool]" = OrderedDict()
_CACHE_SIZE = 65536
# A thin space between digit groups ("1\\,000"), and a bare unit word after a number ("12 apples").
_THIN_THOUSANDS = re.compile(r"(?<=\d)\\[,;:! ]\s*(?=\d{3}(?!\d))")
_NUMBER_WORDS = re.compile(r"([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s+[A-Za-z]{2,}\.?(?:\s+[A-Za-z]{2,}\.?)*")


def normalize(answer: str) -> str:
    """What a careful grader ignores before comparing: `\\$` signs, thin spaces between digit
    groups and a plain unit word after a number (LaTeX units, `\\%`, degrees and `{,}` are left
    to math-verify, which handles them).

    >>> normalize("\\\\$1\\\\,000"), normalize("12 apples"), normalize("x + 1")
    ('1000', '12', 'x + 1')
    """
    s = answer.strip().replace("\\$", "")
    s = _THIN_THOUSANDS.sub("", s)
    m = _NUMBER_WORDS.fullmatch(s)
    return m.group(1) if m else s


def get_pool(workers: int, timeout_s: float) -> WorkerPool:
    """The shared math-verify worker pool for these settings, started lazily and reused."""
    key = (int(workers), float(timeout_s))
    if key not in _POOLS:
        _POOLS[key] = WorkerPool(_WORKER, workers=key[0], timeout_s=key[1])
    return _POOLS[key]


def shutdown() -> None:
    """Stop every math worker process (also done at interpreter exit)."""
    for pool in _POOLS.values():
        pool.close()
    _POOLS.clear()


def check_many(pairs: List[Tuple[str, str]], workers: int = 2, timeout_s: float = TIMEOUT_S) -> List[Optional[bool]]:
    """Equivalence of each (pred, gold) answer pair; None where the check hit `timeout_s` or crashed.

    Plain integers and plain rationals (decimals, a/b, \\frac{a}{b}) compare exactly in-process;
    the rest go to math-verify in the worker pool (cached by normalized pair).
    """
    out: List[Optional[bool]] = [None] * len(pairs)
    todo: Dict[Tuple[str, str], List[int]] = {}
    for i, (pred, gold) in enumerate(pairs):
        pred, gold = normalize(pred), normalize(str(gold))
        if not pred or not gold:
            out[i] = False
            continue
        p, g = _as_int(pred), _as_int(gold)
        if p is not None and g is not None:
            out[i] = p == g
            continue
        p, g = _as_fraction(pred), _as_fraction(gold)
        if p is not None and g is not None:
            out[i] = p == g
        elif len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            out[i] = False
        elif (pred, gold) in _CACHE:
            out[i] = _CACHE[(pred, gold)]
        else:
            todo.setdefault((pred, gold), []).append(i)
    if todo:
        keys = list(todo)
        for key, (status, value) in zip(keys, get_pool(workers, timeout_s).map([list(k) for k in keys])):
            verdict = bool(value) if status == "ok" else None
            if verdict is not None:
                _CACHE[key] = verdict
                if len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
            for i in todo[key]:
                out[i] = verdict
    return out


def is_equivalent(pred: str, gold: str, timeout_s: float = TIMEOUT_S) -> bool:
    """Whether answer string `pred` equals `gold` mathematically (a timeout counts as not equal).

    >>> is_equivalent("1,234", "1234"), is_equivalent(r"\\frac{1}{2}", "0.5"), is_equivalent("12", "13")
    (True, True, False)
    """
    return bool(check_many([(pred, gold)], timeout_s=timeout_s)[0])


@REWARDS.register("math_answer")
def math_answer(
    rollout: Rollout,
    correct: float = 1.0,
    wrong: float = 0.0,
    fallback: Union[str, List[str]] = "last_number",
    timeout_s: float = TIMEOUT_S,
    workers: int = 2,
) -> RewardOutput:
    """Final answer (last \\boxed{}, else fallbacks) equals the sample's answer, via math-verify in a process pool.

    Scores `correct` when equivalent, else `wrong`. `fallback`: "last_number"
    (default), "answer_line", "none", or a list tried in order. Each check has a
    hard `timeout_s` in one of `workers` processes. Counts: `unparsed` (no answer
    found), `timeouts` (check killed). Example with answer "1/2":
    "so \\boxed{\\frac{1}{2}}" -> 1.0, "\\boxed{0.5}" -> 1.0, "\\boxed{2}" -> 0.0,
    "no idea" -> 0.0 (unparsed: 1).
    """
    try:
        chain = _fallbacks(fallback)
    except ValueError as e:
        raise ValueError(f"math_answer: {e}") from None
    if timeout_s <= 0 or workers < 1:
        raise ValueError("math_answer: need timeout_s > 0 and workers >= 1")
    preds: List[Optional[str]] = []
    for i, completion in enumerate(rollout.completions):
        sample = rollout.sample_of(i)
        if sample.answer is None:
            raise RewardError(f"completion {i} of sample {sample.id!r}: sample has no answer to check against",
                              index=i, sample_id=sample.id)
        preds.append(extract_answer(completion.text, chain))
    found = [i for i, p in enumerate(preds) if p is not None]
    verdicts = check_many([(preds[i], str(rollout.sample_of(i).answer)) for i in found], workers, timeout_s)
    scores = [wrong] * len(rollout)
    for i, verdict in zip(found, verdicts):
        scores[i] = correct if verdict else wrong
    counts = {"unparsed": len(preds) - len(found), "timeouts": sum(v is None for v in verdicts)}
    return RewardOutput(scores=scores, counts=counts)
