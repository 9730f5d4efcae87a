"""rlreason.rewards.math_extract: plain-number reading, repeating decimals, the decimal rule, the answer line."""
from __future__ import annotations

import doctest
import time
from fractions import Fraction as F

import pytest

from rlreason.rewards import math_extract
from rlreason.rewards.math_extract import Number, extract_answer, normalize, numbers_match, read_number


def test_docstring_examples():
    result = doctest.testmod(math_extract)
    assert result.attempted >= 5 and result.failed == 0


@pytest.mark.parametrize("text,value,places,sig", [
    ("42", F(42), None, 0),
    ("-7", F(-7), None, 0),
    ("1,234", F(1234), None, 0),
    ("1,234.50", F(123450, 100), 2, 6),
    ("0.0050", F(5, 1000), 4, 2),  # leading zeros are not significant, trailing ones are
    (".5", F(1, 2), 1, 1),
    ("3.", F(3), 0, 1),
    ("1/3", F(1, 3), None, 0),
    ("-\\frac{2}{3}", F(-2, 3), None, 0),
    ("\\frac{-2}{3}", F(-2, 3), None, 0),
    ("\\dfrac13", F(1, 3), None, 0),
    ("\\tfrac{3}{4}", F(3, 4), None, 0),
    ("\\frac1{3}", F(1, 3), None, 0),
    ("\\frac{1.5}{3}", F(1, 2), None, 0),
    ("$5$", F(5), None, 0),
    ("1 000", F(1000), None, 0),  # spaces are dropped (thin spaces are normalize's job)
])
def test_read_number(text, value, places, sig):
    assert read_number(text) == Number(value, places, sig)


@pytest.mark.parametrize("text", ["x", "1,5", "1,2345", "1/0", "\\frac{1}{0}", "\\frac123", "1.5e3", "2\\sqrt{2}",
                                  "50\\%", "(1,2)", "--1", ".", "", "1/2/3", "\\frac{x}{2}"])
def test_read_number_refuses_what_is_not_a_plain_number(text):
    assert read_number(text) is None


@pytest.mark.parametrize("text,expected", [
    ("0.\\overline{3}", "\\frac{1}{3}"),
    ("0.\\bar{6}", "\\frac{2}{3}"),
    ("0.\\overline3", "\\frac{1}{3}"),
    ("1.\\overline{09}", "\\frac{12}{11}"),
    ("0.1\\overline{6}", "\\frac{1}{6}"),
    (".\\overline{142857}", "\\frac{1}{7}"),
    ("-2.\\overline{9}", "-\\frac{3}{1}"),  # 2.999... is 3
    ("x = 0.\\overline{3}", "x = \\frac{1}{3}"),  # anywhere in the answer, for math-verify
    ("\\overline{AB}", "\\overline{AB}"),  # a segment, not a number
])
def test_repeating_decimals_become_fractions(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize("pred,gold,right", [
    ("0.333333", F(1, 3), True),  # 6 significant digits, rounded down
    ("0.333334", F(1, 3), True),  # rounded up: still within one unit of the last place
    ("0.333332", F(1, 3), False),
    ("0.33333", F(1, 3), False),  # 5 significant digits: must be exact
    ("0.666667", F(2, 3), True),
    ("0.666666", F(2, 3), True),  # truncated
    ("333.333", F(1000, 3), True),  # significant digits, not decimal places
    ("2.499999", F(5, 2), False),  # a terminating gold needs its exact value at the prediction's places
    ("2.500000", F(5, 2), True),
    ("0.0000001", F(1, 3000000), False),  # 1 significant digit: exact only (math-verify says equal)
    ("1000.001", F(1000), False),
    ("1/3", F(1, 3), True),
    ("2/6", F(1, 3), True),
    ("0.5", F(1, 2), True),
])
def test_the_decimal_rule(pred, gold, right):
    assert numbers_match(read_number(pred), gold) is right


@pytest.mark.parametrize("text,expected", [
    ("The answer is: 5.", "5"),
    ("answer is\n  $42$", "42"),
    ("the answer isn't clear, but 17", None),
    ("Answer: x = 2\nmore text", "x = 2"),
    ("answer: 3\nso the answer is", "3"),  # the last head with something after it
    ("answer: 1, answer: 2", "2"),
])
def test_answer_line(text, expected):
    assert extract_answer(text, "answer_line") == expected


@pytest.mark.parametrize("text", [
    "the answer is a" + " " * 200000 + "b",  # the old regex backtracked quadratically over the spaces
    "answer: .\n" * 20000,  # many heads with nothing after them
    "answer is " * 20000,
    "answer" + " " * 200000 + "x",
])
def test_answer_line_is_linear(text):
    start = time.perf_counter()
    extract_answer(text, "answer_line")
    assert time.perf_counter() - start < 1.0  # ~0.05 s; quadratic would be minutes at these sizes
