"""Reading a math answer: the final answer in a completion, normalised, and read exactly when it is a plain number.

Everything here runs in the trainer's process on text the policy wrote, so every function is linear
in its input (no regex that can backtrack quadratically, no `int()` of unbounded digit strings:
`rewards/math.py` only reads answers of at most `MAX_ANSWER_CHARS` characters). Anything slower
(sympy) runs in the math worker under its hard timeout.

The decimal rule (one rule for every way the gold answer is written): the gold answer is exact as
written (`0.5` is 1/2, `0.\\overline{3}` is 1/3). A prediction written as an exact number (integer,
fraction, repeating decimal) is right when it equals the gold value. A prediction written as a
terminating decimal is right when it equals the gold value exactly or, when it has at least
`SIG_DIGITS` significant digits, when it is the gold value rounded up or down to the prediction's own
number of decimal places (|pred - gold| < 10^-places): for gold 1/3, `0.333333` and `0.3333334` are
right, `0.333` and `0.33333` are not; for gold 5/2, only `2.5`, `2.50`, ... are right.
"""
from __future__ import annotations

import re
from fractions import Fraction
from typing import List, NamedTuple, Optional, Sequence, Union

FALLBACKS = ("none", "last_number", "answer_line")
SIG_DIGITS = 6  # a decimal with this many significant digits is read at its stated precision

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_OR_BRACE = re.compile(r"(\\(?:boxed|fbox)\s*\{)|[{}]")  # a box's opening, or any other brace
# The last number: thousands groups (1,234.5), plain (12, -3.5) or bare decimals (.5). A minus
# sign counts only when it does not follow a word character or ')' ("5-3" ends in 3, not -3).
# The leading lookahead only rejects other characters quickly (5x faster scans, same matches).
_NUMBER = re.compile(r"(?=[-\d.])(?:(?<![\w)])-)?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
# "The answer is 3/4." / "Answer: x = 2": what follows the last such phrase, up to the end of its line.
_ANSWER_HEAD = re.compile(r"answer\s*(?:is\b\s*:?|:)", re.I)
_SPACE = re.compile(r"\s*")


def last_boxed(text: str) -> Optional[str]:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` with balanced braces, or None.

    >>> last_boxed(r"try \\boxed{1}, then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    """
    first = _BOX.search(text)
    if first is None:
        return None
    open_boxes: List[tuple] = []  # (start, brace depth inside the box); depths increase up the stack
    best, depth = None, 0
    # one pass from the first box to the last closing brace (boxes after it cannot be closed): linear
    for m in _BOX_OR_BRACE.finditer(text, first.start(), text.rfind("}") + 1):
        if m.group(1) or m.group() == "{":
            depth += 1
            if m.group(1):
                open_boxes.append((m.end(), depth))
        else:
            if open_boxes and open_boxes[-1][1] == depth:
                start = open_boxes.pop()[0]
                if best is None or start > best[0]:
                    best = (start, m.start())
            depth -= 1
    # the closed box that starts last: an unclosed last box (truncation) falls back to an earlier one
    return text[best[0]:best[1]].strip() if best else None


def _answer_line(text: str) -> Optional[str]:
    """The rest of the line after the last "answer is" / "answer:" that has something after it,
    without a final period or `$` signs. Linear: positions only, and every line looked at but the
    last is one without a later head in it (those lines do not overlap)."""
    for end in reversed([m.end() for m in _ANSWER_HEAD.finditer(text)]):
        start = _SPACE.match(text, end).end()
        stop = text.find("\n", start)
        line = text[start:stop if stop >= 0 else len(text)].rstrip()
        line = line[:-1].rstrip() if line.endswith(".") else line
        line = line.strip("$ ")
        if line:
            return line
    return None


def _fallback(text: str, how: str) -> Optional[str]:
    if how == "last_number":
        numbers = _NUMBER.findall(text)
        return numbers[-1].replace(",", "") if numbers else None
    if how == "answer_line":
        return _answer_line(text)
    return None


def fallbacks(fallback: Union[str, Sequence[str]]) -> List[str]:
    """The fallback chain as a list; ValueError naming a bad entry."""
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
    chain = fallbacks(fallback)
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for how in chain:
        found = _fallback(text, how)
        if found:
            return found
    return None


# A thin space between digit groups ("1\\,000"), and a bare unit word after a number ("12 apples").
_THIN_THOUSANDS = re.compile(r"(?<=\d)\\[,;:! ]\s*(?=\d{3}(?!\d))")
_NUMBER_WORDS = re.compile(r"([-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s+[A-Za-z]{2,}\.?(?:\s+[A-Za-z]{2,}\.?)*")
# A repeating decimal: 0.\overline{3}, 1.2\overline{34}, .\bar{6}, 0.\overline3.
_REPEATING = re.compile(r"(?<![\d.])(\d*)\.(\d*)\\(?:overline|bar)\s*(?:\{\s*(\d+)\s*\}|(\d))")


def _repeating_as_fraction(m: "re.Match") -> str:
    whole, head, cycle = m.group(1) or "0", m.group(2), m.group(3) or m.group(4)
    den = 10 ** len(head) * (10 ** len(cycle) - 1)
    value = int(whole) + Fraction(int(head + cycle) - int(head or "0"), den)
    return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"


def normalize(answer: str) -> str:
    """What a careful grader ignores before comparing: `\\$` signs, thin spaces between digit
    groups and a plain unit word after a number (LaTeX units, `\\%`, degrees and `{,}` are left
    to math-verify, which handles them). Repeating decimals become exact fractions (math-verify
    cannot read `\\overline`).

    >>> normalize("\\\\$1\\\\,000"), normalize("12 apples"), normalize("x + 1"), normalize("-0.1\\\\overline{6}")
    ('1000', '12', 'x + 1', '-\\\\frac{1}{6}')
    """
    s = answer.strip().replace("\\$", "")
    s = _THIN_THOUSANDS.sub("", s)
    s = _REPEATING.sub(_repeating_as_fraction, s)
    m = _NUMBER_WORDS.fullmatch(s)
    return m.group(1) if m else s


class Number(NamedTuple):
    """A plain number as written: its exact value, and for a terminating decimal the digits after
    the point and the significant digits (None, 0 for exact forms: integers and fractions)."""

    value: Fraction
    places: Optional[int] = None
    sig: int = 0

    @property
    def approximate(self) -> bool:
        """Read at its stated precision (a decimal with at least SIG_DIGITS significant digits)."""
        return self.places is not None and self.sig >= SIG_DIGITS

    def wire(self) -> list:
        """[numerator, denominator, places or None] as strings/ints for the worker's JSON line."""
        return [str(self.value.numerator), str(self.value.denominator), self.places if self.approximate else None]


_DECIMAL = re.compile(r"(?P<sign>[+-]?)(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?:(?P<point>\.)(?P<frac>\d*))?")
_FRAC = re.compile(r"(?P<sign>[+-]?)\\[dtc]?frac(?:\{(?P<a>[^{}]*)\}|(?P<a1>\d))(?:\{(?P<b>[^{}]*)\}|(?P<b1>\d))")
_SLASH = re.compile(r"(?P<sign>[+-]?)(?P<a>[\d.,]+)/(?P<b>[\d.,]+)")


def _decimal(s: str) -> Optional[Number]:
    m = _DECIMAL.fullmatch(s)
    if not m or not (m.group("int") or m.group("frac")):
        return None
    whole, frac = (m.group("int") or "").replace(",", ""), m.group("frac") or ""
    value = Fraction(int(m.group("sign") + whole + frac), 10 ** len(frac))
    if not m.group("point"):
        return Number(value)
    return Number(value, len(frac), len((whole + frac).lstrip("0")))


def read_number(answer: str) -> Optional[Number]:
    """`answer` (normalized, at most a few thousand characters) as a plain number, or None: an integer
    (1,000 allowed), a decimal, a/b or \\frac{a}{b} / \\dfrac13 / \\tfrac{-1}{2} with a sign, inside
    optional `$...$`.

    >>> read_number("2.50"), read_number("-\\\\dfrac34").value, read_number("1,000").value, read_number("x")
    (Number(value=Fraction(5, 2), places=2, sig=3), Fraction(-3, 4), Fraction(1000, 1), None)
    """
    s = answer.replace(" ", "").replace("{,}", ",")
    if s.isdigit() and s.isascii():  # the hot path: a plain integer
        return Number(Fraction(int(s)))
    if len(s) > 2 and s[0] == s[-1] == "$":
        s = s[1:-1]
    m = _FRAC.fullmatch(s) or _SLASH.fullmatch(s)
    if not m:
        return _decimal(s)
    parts = m.groupdict()
    a, b = (_decimal(parts[k] or parts.get(k + "1") or "") for k in "ab")
    if a is None or b is None or b.value == 0:
        return None
    return Number(a.value / b.value * (-1 if m.group("sign") == "-" else 1))


def numbers_match(pred: Number, gold: Fraction) -> bool:
    """The decimal rule (module docstring): exact, or for an approximate decimal the gold value rounded
    up or down to the prediction's decimal places.

    >>> [numbers_match(read_number(p), Fraction(1, 3)) for p in ("1/3", "0.333333", "0.33333", "0.333")]
    [True, True, False, False]
    """
    if pred.approximate:
        return abs(pred.value - gold) < Fraction(1, 10 ** pred.places)
    return pred.value == gold
