"""code_tests: extraction, assert/check/stdio formats, scoring modes, errors; the humaneval and code_jsonl tasks."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace as Term

import pytest

from rlreason.rewards import RewardError, compute_rewards
from rlreason.rewards.code import code_tests, extract_code
from rlreason.rewards.sandbox import Job, run
from rlreason.tasks import TASKS
from rlreason.tasks.code_jsonl import load_rows
from rlreason.tasks.humaneval import load_problems
from rlreason.types import Completion, Rollout, Sample

DATA = os.path.join(os.path.dirname(__file__), "data", "code_tasks.jsonl")


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
    assert out.scores == [0.0, 1.0] and out.counts == {"timeouts": 1, "violations": 0}


def test_bad_answer_raises_reward_error_naming_term_and_sample():
    bad = Sample(id="nope", task="code", prompt="p", answer={"tests": []})
    with pytest.raises(RewardError, match="code_tests.*'nope'.*no tests"):
        compute_rewards(rollout_of([bad], ["x = 1"]), [Term(name="code_tests", weight=1.0, params={})])
    with pytest.raises(ValueError, match="scoring"):
        code_tests(rollout_of([ADD], ["x"]), scoring="partial")


def test_humaneval_has_164_problems_and_chat_samples():
    task = TASKS.get("humaneval")()
    samples = task.eval_samples(1000)
    assert len(samples) == 164 and samples[0].id == "HumanEval/0"
    assert "```python" in samples[0].messages[0]["content"] and samples[0].answer["entry_point"] == "has_close_elements"
    assert task.default_rewards == [{"name": "code_tests", "weight": 1.0}]
    with pytest.raises(ValueError, match="prompt_style"):
        TASKS.get("humaneval").check_params({"prompt_style": "fim"})


def test_humaneval_wrong_solution_fails():
    task = TASKS.get("humaneval")()
    s = task.eval_samples(1)[0]
    wrong = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
    assert code_tests(rollout_of([s], [task.demonstration(s), wrong])).scores == [1.0, 0.0]


@pytest.mark.slow
@pytest.mark.parametrize("style", ["chat", "completion"])
def test_humaneval_canonical_solutions_all_pass(style):
    task = TASKS.get("humaneval")({"prompt_style": style})
    samples = task.eval_samples(164)
    out = code_tests(rollout_of(samples, [task.demonstration(s) for s in samples]), workers=2)
    failed = [s.id for s, score in zip(samples, out.scores) if score != 1.0]
    assert failed == [] and out.counts == {"timeouts": 0, "violations": 0}


def test_code_jsonl_fixture_solutions_pass_and_junk_fails():
    task = TASKS.get("code_jsonl")({"path": DATA})
    samples = task.eval_samples(100)
    assert [s.id for s in samples] == ["add", "is_prime", "sum_line", "echo_twice", "reverse"]
    texts = [task.demonstration(s) for s in samples] + [fenced("print('no')")] * len(samples)
    r = Rollout(samples + samples, [Completion(t, [1], [0.0], "stop") for t in texts], 1)
    assert code_tests(r).scores == [1.0] * 5 + [0.0] * 5


def test_code_jsonl_heldout_split_and_params(tmp_path):
    task = TASKS.get("code_jsonl")({"path": DATA, "heldout_mod": 2})
    held = {s.id for s in task.eval_samples(10)}
    stream = task.train_samples()
    train = {next(stream).id for _ in range(20)}
    assert held and train and not held & train
    with pytest.raises(ValueError, match="path"):
        TASKS.get("code_jsonl").check_params({})


@pytest.mark.parametrize(
    "line,message",
    [
        ("not json", "line 2: not JSON"),
        (json.dumps({"prompt": "p"}), "line 2: needs 'tests' or 'cases'"),
        (json.dumps({"tests": ["assert 1"]}), "line 2: needs a 'prompt'"),
        (json.dumps({"prompt": "p", "tests": "assert 1"}), "line 2: 'tests' must be a list"),
        (json.dumps({"prompt": "p", "cases": [{"input": "1"}]}), "line 2: 'cases' must be"),
        (json.dumps({"prompt": "p", "tests": ["assert 1"], "answer": 3}), "line 2: unknown keys \\['answer'\\]"),
    ],
)
def test_code_jsonl_bad_rows_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "ok", "tests": ["assert True"]}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=f"bad.jsonl {message}"):
        load_rows(str(path))


def test_sandbox_runs_in_parallel_threads():
    jobs = [Job(code=f"x = {i}", tests=[f"assert x == {i}"]) for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        assert [r.passed for r in pool.map(run, jobs)] == [1] * 8


def test_humaneval_problems_come_from_the_package():
    rows = load_problems()
    assert len(rows) == 164 and set(rows[0]) == {"task_id", "prompt", "entry_point", "canonical_solution", "test"}


def test_broken_sandbox_raises_naming_the_sample(monkeypatch):
    from rlreason.rewards import code as rcode
    from rlreason.rewards.sandbox import SandboxError

    def broken(job):
        raise SandboxError("sandbox setup failed: unshare: Operation not permitted")

    monkeypatch.setattr(rcode, "run", broken)
    with pytest.raises(RewardError, match="code_tests.*'add'.*unshare") as info:
        compute_rewards(rollout_of([ADD], ["x = 1"]), [Term(name="code_tests", weight=1.0, params={})])
    assert info.value.sample_id == "add" and info.value.index == 0
