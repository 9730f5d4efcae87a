"""rlreason.rewards.reasoning_gym: three generators scored by the package's own scorer, extraction modes, binary."""
from __future__ import annotations

import itertools

import pytest

from rlreason.rewards import compute_rewards
from rlreason.rewards.reasoning_gym import extract
from rlreason.tasks import TASKS
from rlreason.types import Completion, Rollout, Sample

pytest.importorskip("reasoning_gym")

DATASETS = {
    "chain_sum": {"min_terms": 2, "max_terms": 3},
    "leg_counting": {"min_animals": 1, "max_animals": 2},
    "spell_backward": {},
}
TERM = [type("T", (), {"name": "reasoning_gym", "weight": 1.0, "params": {}})()]


def comp(text):
    return Completion(text=text, token_ids=[1], logprobs=[0.0], finish_reason="stop")


def score(samples, texts, params=None):
    term = type("T", (), {"name": "reasoning_gym", "weight": 1.0, "params": params or {}})()
    out = compute_rewards(Rollout(samples, [comp(t) for t in texts], len(texts) // len(samples)), [term])
    return out.per_term["reasoning_gym"], out.counts


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_three_generators_scored_by_the_package(name):
    task = TASKS.get("reasoning_gym")({"dataset": name, "config": DATASETS[name], "heldout": 8}, seed=0)
    for s in itertools.islice(task.train_samples(), 5):
        ref = s.meta["reference"]
        assert s.task == "reasoning_gym" and s.messages[0]["content"] == s.meta["question"]
        scores, counts = score([s], [f"<think>work</think> \\boxed{{{ref}}}", "<think>x</think> \\boxed{zzzz}",
                                     "no answer"])
        assert scores == [1.0, 0.0, 0.0] and counts == {"reasoning_gym/unparsed": 1, "reasoning_gym/scorer_errors": 0}


def test_answer_extraction_modes_and_binary():
    assert extract("<think>a</think> \\boxed{7}") == "7"
    assert extract("<answer>1</answer> <answer> 8 </answer>", "answer_tag") == "8"
    assert extract("<think>a</think>  42 ", "after_think") == "42" and extract("42", "after_think") is None
    task = TASKS.get("reasoning_gym")({"dataset": "chain_sum", "heldout": 1})
    s = task.eval_samples(1)[0]
    ref = s.meta["reference"]
    # the package's scorer gives partial credit when the reference is inside a longer answer
    part, _ = score([s], [f"\\boxed{{{ref} x}}"])
    assert 0 < part[0] < 1
    full, _ = score([s], [f"\\boxed{{{ref} x}}"], {"binary": True})
    assert full == [0.0]
    tag, _ = score([s], [f"<answer>{ref}</answer>"], {"extract_from": "answer_tag"})
    assert tag == [1.0]


def test_reward_rejects_foreign_samples():
    s = Sample(id="a", task="arithmetic", prompt="1+1", answer="2")
    with pytest.raises(Exception, match="not from the reasoning_gym task"):
        score([s], ["\\boxed{2}"])
