"""Worker process for `math_answer`: one JSON line [pred, gold] in, one JSON line (true/false) out.

Started by `rewards/pool.py` as `python -I <this file>`; imports only
math-verify (and its sympy), never the trainer. Runs until stdin closes. The
pool enforces the wall-clock timeout by killing this process, so math-verify's
own signal-based timeouts are off here.
"""
import json
import resource
import sys
from functools import lru_cache

resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a runaway sympy expression dies with MemoryError

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify  # noqa: E402

_CONFIG = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


@lru_cache(maxsize=8192)
def _parse(text: str, wrap: bool):
    source = "\\boxed{" + text + "}" if wrap else text
    return parse(source, extraction_config=_CONFIG, parsing_timeout=None)


def parse_any(text: str):
    """Boxed-wrapped unless the text already has `$` or a box; raw as a fallback."""
    if "$" in text or "\\boxed" in text or "\\fbox" in text:
        return _parse(text, False)
    return _parse(text, True) or _parse(text, False)


def equivalent(pred: str, gold: str) -> bool:
    try:
        g, p = parse_any(gold), parse_any(pred)
        return bool(g and p and verify(g, p, timeout_seconds=None))
    except Exception:  # noqa: BLE001 - an answer sympy cannot handle is not equivalent
        return False


def main() -> None:
    for line in sys.stdin:
        pred, gold = json.loads(line)
        sys.stdout.write(json.dumps(equivalent(pred, gold)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
