"""Final-answer correctness for math problems, checked with math-verify.

The answer is the content of the last `\\boxed{...}` (or `\\fbox{...}`) in the
completion, or, as a fallback, the last number in the text. Plain integers are
compared directly (the hot path of the arithmetic task); anything else goes
through math-verify (Kydlíček et al., HuggingFace, 2025), which parses LaTeX or
plain expressions into sympy and compares them symbolically and numerically.
"""
from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Optional

from rlreason.rewards import REWARDS, score_each
from rlreason.types import Completion, RewardOutput, Rollout, Sample

FALLBACKS = ("none", "last_number")

# Math-verify's timeouts (signal.alarm) only work in the main thread; there we allow this many seconds.
TIMEOUT_S = 3
# Longer answers are never sent to sympy (a guard against pathological inputs when timeouts are off).
MAX_ANSWER_CHARS = 1000

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
# The last number: thousands groups (1,234.5), plain (12, -3.5) or bare decimals (.5). A minus
# sign counts only when it does not follow a word character or ')' ("5-3" ends in 3, not -3).
_NUMBER = re.compile(r"(?:(?<![\w)])-)?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
_INT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)")


def last_boxed(text: str) -> Optional[str]:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` with balanced braces, or None.

    >>> last_boxed(r"try \\boxed{1}, then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    """
    starts = [m.end() for m in _BOX.finditer(text)]
    for start in reversed(starts):  # an unclosed last box (truncation) falls back to an earlier one
        depth = 1
        for j in range(start, len(text)):
            ch = text[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start:j].strip()
    return None


def extract_answer(text: str, fallback: str = "last_number") -> Optional[str]:
    """The final answer in `text`: the last boxed content, else (fallback="last_number")
    the last number with thousands separators removed, else None.

    >>> extract_answer(r"so \\boxed{132}."), extract_answer("it is 1,234."), extract_answer("x", "none")
    ('132', '1234', None)
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    if fallback == "last_number":
        numbers = _NUMBER.findall(text)
        if numbers:
            return numbers[-1].replace(",", "")
    return None


def _as_int(s: str) -> Optional[int]:
    """`s` as an int when it is a plain integer (spaces and thousands commas allowed), else None."""
    s = s.replace(" ", "").replace("{,}", ",")
    return int(s.replace(",", "")) if _INT.fullmatch(s) else None


@lru_cache(maxsize=8192)
def _parse(text: str, wrap: bool, timeout: Optional[int]) -> list:
    """math-verify parse of `text`, optionally wrapped as `\\boxed{text}` so bare answers parse."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    source = "\\boxed{" + text + "}" if wrap else text
    return parse(source, extraction_config=config, parsing_timeout=timeout)


def _parse_any(text: str, timeout: Optional[int]) -> list:
    """Parse an answer string: boxed-wrapped unless it already has `$` or a box, raw as fallback."""
    if "$" in text or "\\boxed" in text or "\\fbox" in text:
        return _parse(text, False, timeout)
    return _parse(text, True, timeout) or _parse(text, False, timeout)


@lru_cache(maxsize=8192)
def _verify(pred: str, gold: str, timeout: Optional[int]) -> bool:
    """Cached math-verify comparison of two answer strings."""
    from math_verify import verify

    gold_parsed, pred_parsed = _parse_any(gold, timeout), _parse_any(pred, timeout)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def is_equivalent(pred: str, gold: str) -> bool:
    """Whether answer string `pred` equals `gold` mathematically.

    Plain integers compare as ints; anything else goes through math-verify, with
    its signal-based timeouts on in the main thread and off elsewhere (where
    signal.alarm would raise).

    >>> is_equivalent("1,234", "1234"), is_equivalent(r"\\frac{1}{2}", "0.5"), is_equivalent("12", "13")
    (True, True, False)
    """
    pred, gold = pred.strip(), str(gold).strip()
    if not pred or not gold:
        return False
    p, g = _as_int(pred), _as_int(gold)
    if p is not None and g is not None:
        return p == g
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return False
    timeout = TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    return _verify(pred, gold, timeout)


@REWARDS.register("math_answer")
def math_answer(
    rollout: Rollout, correct: float = 1.0, wrong: float = 0.0, fallback: str = "last_number"
) -> RewardOutput:
    """Final answer (last \\boxed{}, else last number) equals the sample's answer, via math-verify.

    Scores `correct` when equivalent, else `wrong`; counts answers that could not
    be found as `unparsed`. `fallback` is "last_number" (use the last number when
    nothing is boxed) or "none". Example with answer "1/2":
    "so \\boxed{\\frac{1}{2}}" -> 1.0, "\\boxed{0.5}" -> 1.0, "\\boxed{2}" -> 0.0,
    "no idea" -> 0.0 (unparsed: 1).
    """
    if fallback not in FALLBACKS:
        raise ValueError(f"math_answer: fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
    unparsed = 0

    def score(sample: Sample, completion: Completion) -> float:
        nonlocal unparsed
        if sample.answer is None:
            raise ValueError(f"sample {sample.id!r} has no answer to check against")
        pred = extract_answer(completion.text, fallback)
        if pred is None:
            unparsed += 1
            return wrong
        return correct if is_equivalent(pred, str(sample.answer)) else wrong

    scores = score_each(rollout, score)
    return RewardOutput(scores=scores, counts={"unparsed": unparsed})
