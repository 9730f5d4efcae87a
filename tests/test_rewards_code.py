"""rlreason.rewards.code: code_tests' extraction, assert/check/stdio formats, scoring modes and errors."""
from __future__ import annotations

from types import SimpleNamespace as Term

import pytest

from rlreason.rewards import RewardError, compute_rewards
from rlreason.rewards.code import code_tests, extract_code
from rlreason.types import Completion, Rollout, Sample


def rollout_of(samples, texts):
    g = len(texts) // len(samples)
    return Rollout(samples, [Completion(t, [1], [0.0], "stop") for t in texts], g)


def fenced(code):
    return f"Here is my solution.\n```python\n{code}\n```\nDone."


@pytest.mark.parametrize(
    "text,expected",
    [
        ("```python\nx = 1\n```", "x = 1\n"),
        ("a\n```py\nx = 1\n```\nb\n```python\nx = 2\n```", "x = 2\n"),
        ("```\nx = 3\n```", "x = 3\n"),
        ("```Python3\nx = 4\n```", "x = 4\n"),
        ("text then an unclosed fence\n```python\nx = 5\n", "x = 5\n"),
        ("x = 6", "x = 6"),
    ],
)
def test_extract_code(text, expected):
    assert extract_code(text) == expected


ADD = Sample(id="add", task="code", prompt="p", answer={"tests": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]})
ECHO = Sample(id="sum", task="code", prompt="p",
              answer={"cases": [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10"}]})


def test_assert_tests_pass_fail_and_fraction():
    texts = [fenced("def add(a, b):\n    return a + b"), fenced("def add(a, b):\n    return 3"), "def add(a, b) return"]
    r = rollout_of([ADD], texts)
    assert code_tests(r).scores == [1.0, 0.0, 0.0]
    assert code_tests(r, scoring="fraction").scores == [1.0, 0.5, 0.0]


def test_stdio_cases_and_mixed_formats():
    texts = [fenced("a, b = map(int, input().split())\nprint(a + b)"), fenced("print(3)"), fenced("import sys\nsys.exit(1)")]
    out = code_tests(rollout_of([ECHO], texts), scoring="fraction")
    assert out.scores == [1.0, 0.5, 0.0]
    mixed = Sample(id="m", task="code", prompt="p", answer={"tests": ["assert double(2) == 4"],
                   "cases": [{"input": "3\n", "output": "6\n"}]})
    prog = "def double(x):\n    return 2 * x\nif __name__ == '__main__':\n    print(double(int(input())))"
    assert code_tests(rollout_of([mixed], [fenced(prog)])).scores == [1.0]


def test_timeout_counts_and_scores_zero():
    slow = Sample(id="slow", task="code", prompt="p", answer={"tests": ["assert f() == 1"]})
    out = code_tests(rollout_of([slow], [fenced("def f():\n    while True: pass"), fenced("def f(): return 1")]),
                     timeout_s=1)
    assert out.scores == [0.0, 1.0] and out.counts == {"timeouts": 1, "violations": 0, "errors": 0}
    assert out.outcomes == ["wrong", "ok"]  # a program past its time limit failed: never masked as "timeout"


def test_bad_answer_raises_reward_error_naming_term_and_sample():
    bad = Sample(id="nope", task="code", prompt="p", answer={"tests": []})
    with pytest.raises(RewardError, match="code_tests.*'nope'.*no tests"):
        compute_rewards(rollout_of([bad], ["x = 1"]), [Term(name="code_tests", weight=1.0, params={})])
    with pytest.raises(ValueError, match="scoring"):
        code_tests(rollout_of([ADD], ["x"]), scoring="partial")


def test_a_broken_sandbox_is_an_error_outcome_for_that_sample_and_the_batch_goes_on(monkeypatch, caplog):
    from rlreason.rewards import code as rcode
    from rlreason.rewards.sandbox import SandboxError

    real_run = rcode.run

    def broken_for_the_first(job):
        if "return 3" in job.code:
            raise SandboxError("sandbox setup failed: unshare: Operation not permitted")
        return real_run(job)

    monkeypatch.setattr(rcode, "run", broken_for_the_first)
    texts = [fenced("def add(a, b):\n    return 3"), fenced("def add(a, b):\n    return a + b"), "def add(a, b) return"]
    out = compute_rewards(rollout_of([ADD], texts), [Term(name="code_tests", weight=1.0, params={})])
    assert out.per_term["code_tests"] == [0.0, 1.0, 0.0] and out.outcomes["code_tests"] == ["error", "ok", "wrong"]
    assert out.counts["code_tests/errors"] == 1 and out.counts["code_tests/violations"] == 0
    assert out.counts["code_tests/unchecked"] == 1 and out.checked() == [False, True, True]
    assert code_tests(rollout_of([ADD], texts)).outcomes == ["error", "ok", "wrong"]
    assert "'add' could not be checked: sandbox setup failed" in caplog.text


def test_verdict_is_clamped_and_checked():
    from rlreason.rewards.code import _verdict
    from rlreason.rewards.sandbox import Result

    assert _verdict([Result("ok", 1000000, 1)], "fraction") == (0.0, "wrong", "violations")
    assert _verdict([Result("ok", -1, 2)], "fraction") == (0.0, "wrong", "violations")
    assert _verdict([Result("ok", 1, 2), Result("ok", 2, 2)], "fraction") == (0.75, "ok", None)
    assert _verdict([Result("ok", 2, 2), Result("timeout")], "pass_fail") == (0.0, "wrong", "timeouts")
    assert _verdict([Result("ok", 0, 0)], "fraction") == (0.0, "wrong", None)


JUDGED = [  # (answer, program, score): how the judge binds what the tests read from the program
    ({"tests": ["assert math.isclose(area(2), 12.566, rel_tol=1e-3)"]},
     "import math\ndef area(r):\n    return math.pi * r * r", 1.0),  # `math` is the program's import
    ({"tests": ["assert N == 5", "assert TABLE[2] == (4, 'x')"]}, "N = 5\nTABLE = {2: (4, 'x')}", 1.0),  # data
    ({"tests": ["try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('no error')"]},
     "def f(x):\n    if x < 0:\n        raise ValueError('negative')", 1.0),  # the program's exception, re-raised
    ({"tests": ["try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('no error')"]},
     "def f(x):\n    raise TypeError('wrong kind')", 0.0),
    ({"tests": ["assert [f(), f(), f()] == [1, 2, 3]"]}, "n = 0\ndef f():\n    global n\n    n += 1\n    return n", 1.0),
    ({"tests": ["assert list(f(3)) == [0, 1, 2]"]}, "def f(n):\n    return iter(range(n))", 0.0),  # not plain data
    ({"tests": ["assert f(3) == 4"]}, "def g(x):\n    return x + 1", 0.0),  # no f: NameError
    ({"check": "def check(candidate):\n    assert abs(poly([1, 2], candidate([1, 2]))) < 1e-6\n", "entry_point": "find_zero",
      "prelude": "def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\ndef find_zero(xs):\n    '''root'''\n"},
     "def poly(xs, x):\n    return 0\ndef find_zero(xs):\n    return 7.0", 0.0),  # the tests' `poly` is the task's
    ({"check": "def check(candidate):\n    assert abs(poly([1, 2], candidate([1, 2]))) < 1e-6\n", "entry_point": "find_zero",
      "prelude": "def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\ndef find_zero(xs):\n    '''root'''\n"},
     "def find_zero(xs):\n    return -xs[0] / xs[1]", 1.0),
]


@pytest.mark.parametrize("answer,program,score", JUDGED)
def test_the_judge_binds_functions_data_modules_and_exceptions(answer, program, score):
    sample = Sample(id="j", task="code", prompt="p", answer=answer)
    out = code_tests(rollout_of([sample], [fenced(program)]))
    assert out.scores == [score] and out.counts == {"timeouts": 0, "violations": 0, "errors": 0}
