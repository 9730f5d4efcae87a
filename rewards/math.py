"""Final-answer correctness for math problems, checked with math-verify.

The answer is the content of the last `\\boxed{...}` (or `\\fbox{...}`) in the
completion, or, as a fallback, the last number in the text (`rewards/math_extract.py`,
linear in the completion's length). Two plain numbers (integers, decimals, fractions,
repeating decimals) are compared exactly in-process (the hot path of the arithmetic
task; decimals by the decimal rule of `math_extract`); anything else goes
through math-verify (Kydlíček et al., HuggingFace, 2025), which parses LaTeX or
plain expressions into sympy and compares them symbolically and numerically.

math-verify runs in worker processes (`rewards/pool.py`) with a hard wall-clock
timeout that this project enforces by killing the worker: its own timeout uses
`signal.alarm`, which raises outside the main thread. A pathological answer
therefore costs at most `timeout_s`, scores `wrong`, has the outcome "timeout" and is
counted as `timeouts`; a worker that dies or a check that raises is "error" (`errors`).
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

from rlreason.rewards.math_extract import (  # noqa: F401  (extraction and reading: re-exported)
    FALLBACKS, SIG_DIGITS, Number, extract_answer, fallbacks, last_boxed, normalize, numbers_match, read_number,
)
from rlreason.rewards.terms import REWARDS, RewardError
from rlreason.rewards.pool import WorkerPool
from rlreason.types import ERROR, OK, TIMEOUT, WRONG, RewardOutput, Rollout

# Default hard wall-clock limit for one math-verify check (the worker is killed after it).
TIMEOUT_S = 5.0
# Longer answers are never read or sent to sympy (they score as not equivalent); this also bounds
# every in-process step after extraction (int() of the digits, Fraction arithmetic).
MAX_ANSWER_CHARS = 1000
# A prediction whose braces nest deeper is wrong unread: sympy can take minutes on `\frac{1}{` nested 90
# deep, and a check that times out is masked by default (rewards_on_error), so a policy must not be able
# to turn a wrong answer into an unchecked one that way. Real answers nest a few levels.
MAX_ANSWER_NESTING = 12


def nesting(text: str) -> int:
    """The deepest `{`/`(`/`[` nesting of `text` (linear). Example: nesting("\\frac{\\sqrt{2}}{(3)}") == 2."""
    depth = deepest = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "})]":
            depth = max(0, depth - 1)
    return deepest

_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_math_worker.py")
_POOLS: Dict[Tuple[int, float], WorkerPool] = {}
_CACHE: "OrderedDict[Tuple[str, str], bool]" = OrderedDict()
_CACHE_SIZE = 65536
_ASSIGNMENT = re.compile(r"[A-Za-z]\s*=\s*(.+)", re.S)


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


def _in_process(pred: str, gold: str) -> Tuple[Optional[bool], list]:
    """The verdict when no worker is needed (else None), and the worker's item: the normalized pair and
    each side read as a plain number (`Number.wire()` or None)."""
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return False, []  # bounded before any reading: never int() of a million digits
    if nesting(pred) > MAX_ANSWER_NESTING:
        return False, []  # never sent to sympy: a stall would be masked, not wrong
    pred, gold = normalize(pred), normalize(gold)
    if not pred or not gold:
        return False, []
    p, g = read_number(pred), read_number(gold)
    assignment = _ASSIGNMENT.fullmatch(pred) if p is None and "=" not in gold else None
    p = read_number(assignment.group(1)) if assignment else p  # "x = 0.25" against 1/4 is 0.25
    if p and g:
        return numbers_match(p, g.value), []
    return None, [pred, gold, p.wire() if p else None, g.wire() if g else None]


def check_outcomes(pairs: List[Tuple[str, str]], workers: int = 2, timeout_s: float = TIMEOUT_S) -> List[str]:
    """The outcome of checking each (pred, gold) answer pair: "ok" (equivalent), "wrong", "timeout"
    (the worker was killed at `timeout_s`) or "error" (the worker died or the check raised).

    Two plain numbers (integers, decimals, a/b, \\frac{a}{b}, repeating decimals) are compared
    in-process by the decimal rule (`rlreason.rewards.math_extract`); the rest go to the worker pool
    (math-verify, with the same decimal rule when one side is a plain number), cached by normalized pair.
    """
    out: List[str] = [WRONG] * len(pairs)
    todo: Dict[Tuple[str, str], List[int]] = {}
    wire: Dict[Tuple[str, str], list] = {}
    for i, (pred, gold) in enumerate(pairs):
        verdict, item = _in_process(pred, str(gold))
        key = (item[0], item[1]) if item else None
        if key is None:
            out[i] = OK if verdict else WRONG
        elif key in _CACHE:
            out[i] = OK if _CACHE[key] else WRONG
        else:
            todo.setdefault(key, []).append(i)
            wire[key] = item
    if todo:
        keys = list(todo)
        for key, (status, value) in zip(keys, get_pool(workers, timeout_s).map([wire[k] for k in keys])):
            if status == "timeout":
                outcome = TIMEOUT
            else:  # a verdict, or an error: the worker died ("crash") or replied {"error": ...}
                outcome = (OK if value else WRONG) if status == "ok" and isinstance(value, bool) else ERROR
            if outcome in (OK, WRONG):
                _CACHE[key] = outcome == OK
                if len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
            for i in todo[key]:
                out[i] = outcome
    return out


def check_many(pairs: List[Tuple[str, str]], workers: int = 2, timeout_s: float = TIMEOUT_S) -> List[Optional[bool]]:
    """Equivalence of each (pred, gold) answer pair; None where the check timed out or failed."""
    return [None if o in (TIMEOUT, ERROR) else o == OK for o in check_outcomes(pairs, workers, timeout_s)]


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
    hard `timeout_s` in one of `workers` processes. A decimal answer with at least
    6 significant digits is right when it is the gold value rounded up or down to its
    own decimal places (gold 1/3: 0.333333 right, 0.33333 wrong); otherwise numbers
    must be equal, however the gold is written. Outcomes: ok, wrong (also: no answer
    found), timeout (check killed), error (worker died / check raised); the last two
    score `wrong` too. Counts: `unparsed`, `timeouts`, `errors`. Example with answer
    "1/2": "so \\boxed{\\frac{1}{2}}" -> 1.0, "\\boxed{0.5}" -> 1.0, "\\boxed{2}" -> 0.0,
    "no idea" -> 0.0 (unparsed: 1).
    """
    try:
        chain = fallbacks(fallback)
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
    checked = check_outcomes([(preds[i], str(rollout.sample_of(i).answer)) for i in found], workers, timeout_s)
    outcomes = [WRONG] * len(rollout)
    for i, outcome in zip(found, checked):
        outcomes[i] = outcome
    counts = {"unparsed": len(preds) - len(found), "timeouts": checked.count(TIMEOUT), "errors": checked.count(ERROR)}
    return RewardOutput(scores=[correct if o == OK else wrong for o in outcomes], counts=counts, outcomes=outcomes)
