"""Reference-answer parsing and the named field-mapping presets of the file/`hf` tasks.

A dataset row holds a question and a reference; the reference is turned into
the answer string the `math_answer` reward compares against, by one of
`ANSWER_FORMATS`:

- `plain`: the field as is (stripped): `"  42 "` -> `"42"`.
- `gsm8k`: the text after the last `####`, thousands commas removed, which must be a
  number (GSM8K, Cobbe et al. 2021, arXiv 2110.14168): `"... so 1,200.\\n#### 1,200"` -> `"1200"`.
- `boxed`: the content of the last `\\boxed{...}` of a worked solution (MATH, Hendrycks et
  al. 2021, arXiv 2103.03874): `"... is $\\boxed{\\frac{1}{2}}$."` -> `"\\frac{1}{2}"`.

A reference that does not parse raises `ValueError` (a bad row, see `tasks/files.py`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?")
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def boxed_content(text: str) -> Optional[str]:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) with balanced braces, else None.

    >>> boxed_content(r"so $\\boxed{3}$ or rather $\\boxed{\\frac{1}{2}}$")
    '\\\\frac{1}{2}'
    """
    for m in reversed(list(_BOX.finditer(text))):
        depth = 1
        for j in range(m.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return text[m.end():j].strip()
    return None


def _as_text(value: Any) -> str:
    if value is None:
        raise ValueError("reference answer is empty")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text:
        raise ValueError("reference answer is empty")
    return text


def parse_plain(value: Any) -> str:
    """The reference as stripped text; numbers become their shortest form (3.0 -> '3')."""
    return _as_text(value)


def parse_gsm8k(value: Any) -> str:
    """The number after the last '####', commas removed (GSM8K's answer field)."""
    text = _as_text(value)
    if "####" not in text:
        raise ValueError("reference answer has no '####' final-answer marker")
    final = text.rsplit("####", 1)[1].strip().replace(",", "").rstrip(".")
    if not _NUMBER.fullmatch(final):
        raise ValueError(f"reference answer after '####' is not a number: {final[:40]!r}")
    return final


def parse_boxed(value: Any) -> str:
    """The content of the last \\boxed{} of a worked solution (MATH's solution field)."""
    found = boxed_content(_as_text(value))
    if not found:
        raise ValueError("reference solution has no complete, non-empty \\boxed{...}")
    return found


ANSWER_FORMATS: Dict[str, Callable[[Any], str]] = {"plain": parse_plain, "gsm8k": parse_gsm8k, "boxed": parse_boxed}


@dataclass(frozen=True)
class Preset:
    """A named field mapping: which fields hold the question and the reference, and how to parse it."""

    question: str
    answer: str
    answer_format: str
    doc: str


PRESETS: Dict[str, Preset] = {
    "gsm8k": Preset("question", "answer", "gsm8k",
                    "GSM8K rows {question, answer}: the answer is the number after '####' (commas stripped)"),
    "math": Preset("problem", "solution", "boxed",
                   "MATH rows {problem, solution}: the answer is the last \\boxed{} of the solution"),
    "math_answer": Preset("problem", "answer", "plain",
                          "MATH-500 / DeepScaleR-style rows {problem, answer}: the answer field as is"),
}


SOLUTION_CHECKED = 200  # references looked at by `solution_like` (the first ones of the file)


def solution_like(answers: List[str]) -> Optional[str]:
    """Why plain reference answers look like whole worked solutions rather than final answers, or None.

    Most of the first SOLUTION_CHECKED must show it: a '####' marker (GSM8K), a \\boxed{} (MATH), or long text
    (over 60 characters) with at least 3 numbers. Example: ["3 * 4 = 12 pens.\\n#### 12"] -> "#### markers".
    """
    head = [a for a in answers[:SOLUTION_CHECKED] if isinstance(a, str)]
    if not head:
        return None
    for reason, test in (("#### markers", lambda a: "####" in a), ("\\boxed{} in the text", lambda a: _BOX.search(a)),
                         ("long text with many numbers", lambda a: len(a) > 60 and len(_NUMBER.findall(a)) >= 3)):
        if sum(bool(test(a)) for a in head) * 2 > len(head):
            return reason
    return None


SOLUTION_HINTS = {
    "#### markers": "did you mean data.params.preset: gsm8k (the number after ####)?",
    "\\boxed{} in the text": "did you mean data.params.preset: math or data.params.answer_format: boxed (the last \\boxed{})?",
    "long text with many numbers": "map data.params.answer to a field that holds only the final answer, or set "
                                   "data.params.answer_format (gsm8k | boxed)",
}
