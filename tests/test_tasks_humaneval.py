"""rlreason.tasks.humaneval: the 164 problems come from the package as chat samples; the canonical solutions pass."""
from __future__ import annotations

import pytest

from rlreason.rewards.code import code_tests
from rlreason.tasks import TASKS
from rlreason.tasks.humaneval import load_problems
from rlreason.types import Completion, Rollout


def rollout_of(samples, texts):
    g = len(texts) // len(samples)
    return Rollout(samples, [Completion(t, [1], [0.0], "stop") for t in texts], g)


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
    assert failed == [] and out.counts == {"timeouts": 0, "violations": 0, "errors": 0}


def test_humaneval_problems_come_from_the_package():
    rows = load_problems()
    assert len(rows) == 164 and set(rows[0]) == {"task_id", "prompt", "entry_point", "canonical_solution", "test"}
