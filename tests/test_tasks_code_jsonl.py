"""rlreason.tasks.code_jsonl: the fixture's solutions pass, held-out split and params, bad rows name file and line."""
from __future__ import annotations

import json
import os

import pytest

from rlreason.rewards.code import code_tests
from rlreason.tasks import TASKS
from rlreason.tasks.code_jsonl import load_rows
from rlreason.types import Completion, Rollout

DATA = os.path.join(os.path.dirname(__file__), "data", "code_tasks.jsonl")


def fenced(code):
    return f"Here is my solution.\n```python\n{code}\n```\nDone."


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


@pytest.mark.parametrize("line, message", [
    (b'{"prompt": "p\xff", "tests": ["assert 1"]}', "line 2: not UTF-8 (byte 0xff at position 13)"),
    (b'{"prompt": " \\n ", "tests": ["assert 1"]}', "line 2: empty prompt (field 'prompt' is blank)"),
    (b'{"text": "", "tests": ["assert 1"]}', "line 2: empty prompt (field 'text' is blank)"),
])
def test_code_jsonl_text_not_utf8_or_blank_prompt_is_one_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps({"prompt": "ok", "tests": ["assert True"]}).encode() + b"\n" + line + b"\n")
    with pytest.raises(ValueError) as info:
        load_rows(str(path))
    assert str(info.value) == f"{path} {message}"
