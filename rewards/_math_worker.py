"""Worker process for `math_answer`: one JSON line [pred, gold, pred_number, gold_number] in, one JSON
line out: true / false, or {"error": "..."} when the check raised.

Started by `rewards/pool.py` as `python -I <this file>`; imports only math-verify (and its sympy),
never the trainer, then writes the line "ready". Runs until stdin closes. The pool enforces the
wall-clock timeout by killing this process, so math-verify's own signal-based timeouts are off here.

`pred_number` / `gold_number` are what `rewards/math_extract.py` read in the parent when that side is
a plain number ([numerator, denominator, places or null]; null otherwise). When one side is a plain
number and the other a single real number in another form (`\\frac{\\sqrt{4}}{6}`, `10^{3}`), the
parent's decimal rule is applied here to the exact sympy value, so that the verdict does not depend on
how an equal gold answer is written; everything else is math-verify's `verify`.
"""
import json
import resource
import sys
from functools import lru_cache

resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a runaway sympy expression dies with MemoryError

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify  # noqa: E402
from sympy import Rational  # noqa: E402

_CONFIG = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
_DIGITS = 60  # working precision (significant digits) when a value is irrational


@lru_cache(maxsize=8192)
def _parse(text: str, wrap: bool):
    source = "\\boxed{" + text + "}" if wrap else text
    return parse(source, extraction_config=_CONFIG, parsing_timeout=None)


def parse_any(text: str):
    """Boxed-wrapped unless the text already has `$` or a box; raw as a fallback."""
    if "$" in text or "\\boxed" in text or "\\fbox" in text:
        return _parse(text, False)
    return _parse(text, True) or _parse(text, False)


def _real_value(text: str):
    """The sympy value of `text` when it is one finite real number (no symbols, no %), else None."""
    if "%" in text:  # math-verify's percent rule (50\\% = 0.5 = 50) is left to verify
        return None
    parsed = parse_any(text)
    expr = parsed[0] if parsed else None
    if getattr(expr, "is_number", False) and expr.is_real is True and expr.is_finite is True:
        return expr.doit()
    return None


def _numbers_match(pred, gold, places) -> bool:
    """The parent's decimal rule on sympy values: exact, or |pred - gold| < 10^-places."""
    diff = pred - gold
    if diff.is_Rational:
        return bool(abs(diff) < Rational(1, 10 ** places)) if places is not None else diff == 0
    # not known to be rational: numerically, _DIGITS digits beyond the prediction's places; a
    # difference that equals the bound to that precision is a terminating gold in disguise: not within
    diff = abs(diff.evalf(_DIGITS + (places or 0)))
    slack = Rational(1, 10 ** _DIGITS) * (1 + abs(gold.evalf(_DIGITS)))
    return bool(diff < Rational(1, 10 ** places) - slack) if places is not None else bool(diff <= slack)


def numeric_verdict(pred: str, gold: str, p, g):
    """The decimal rule's verdict when exactly one side was read as a plain number and the other is a
    single real number; None (math-verify decides) otherwise."""
    if (p is None) == (g is None):
        return None
    try:
        pv = Rational(int(p[0]), int(p[1])) if p else _real_value(pred)
        gv = Rational(int(g[0]), int(g[1])) if g else _real_value(gold)
        if pv is None or gv is None:
            return None
        return _numbers_match(pv, gv, p[2] if p else None)
    except Exception:  # noqa: BLE001 - a value sympy cannot compare this way: math-verify decides
        return None


def equivalent(pred: str, gold: str, p=None, g=None) -> bool:
    verdict = numeric_verdict(pred, gold, p, g)
    if verdict is not None:
        return verdict
    g_parsed, p_parsed = parse_any(gold), parse_any(pred)
    return bool(g_parsed and p_parsed and verify(g_parsed, p_parsed, timeout_seconds=None))


def main() -> None:
    sys.stdout.write(json.dumps("ready") + "\n")  # imports done: the pool starts the item clocks now
    sys.stdout.flush()
    for line in sys.stdin:
        pred, gold, *numbers = json.loads(line)
        try:
            out = equivalent(pred, gold, *numbers)
        except Exception as e:  # noqa: BLE001 - the check itself failed: reported as an error, not a verdict
            out = {"error": f"{type(e).__name__}: {e}"[:300]}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
