"""Mixtures: sampling proportions, determinism, reward routing by task, templates, prompt-length checks."""
from __future__ import annotations

import itertools
import math

import pytest

from rlreason.config import load_config
from rlreason.rewards import compute_rewards
from rlreason.tasks.mixture import CORRECT, build_task, score_by_task
from rlreason.types import Completion, Rollout, Sample

MIX = ("data.mixture=[{task: arithmetic, weight: 3}, "
       "{task: jsonl, name: gsm, weight: 1, params: {path: tests/data/gsm8k_train.jsonl, preset: gsm8k, "
       "eval_path: tests/data/gsm8k_test.jsonl}}, "
       "{task: reasoning_gym, name: legs, weight: 1, eval_size: 2, params: {dataset: leg_counting}}]")


def comp(text):
    return Completion(text=text, token_ids=[1], logprobs=[0.0], finish_reason="stop")


def test_mixture_proportions_and_determinism():
    cfg = load_config(None, [MIX])
    task = build_task(cfg.data, seed=0, rewards=cfg.rewards)
    n = 5000
    names = [s.task for s in itertools.islice(task.train_samples(), n)]
    for name, p in (("arithmetic", 0.6), ("gsm", 0.2), ("legs", 0.2)):
        frac = names.count(name) / n
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n), (name, frac)  # 4 standard errors
    again = [s.task for s in itertools.islice(build_task(cfg.data, seed=0).train_samples(), 300)]
    assert again == names[:300]
    assert [s.task for s in itertools.islice(build_task(cfg.data, seed=1).train_samples(), 300)] != names[:300]


def test_mixture_eval_rewards_and_names():
    cfg = load_config(None, [MIX, "data.eval_size=3"])
    task = build_task(cfg.data, seed=0, rewards=cfg.rewards)
    ev = task.eval_samples(cfg.data.eval_size)
    assert [s.task for s in ev] == ["arithmetic"] * 3 + ["gsm"] * 3 + ["legs"] * 2  # per-entry caps
    routes = {k: [t.name for t in v] for k, v in task.rewards_by_task.items()}
    assert routes == {"arithmetic": ["math_answer", "format"], "gsm": ["math_answer", "format"],
                      "legs": ["reasoning_gym"]}


def test_single_task_uses_top_level_rewards():
    cfg = load_config(None, ["rewards=[{name: format, weight: 2.0}]"])
    task = build_task(cfg.data, seed=0, rewards=cfg.rewards)
    assert list(task.rewards_by_task) == ["arithmetic"]
    assert [(t.name, t.weight) for t in task.rewards_by_task["arithmetic"]] == [("format", 2.0)]


def test_score_by_task_routes_groups_and_keeps_order():
    """Prompts of two tasks interleaved, G=2: each group is scored by its task's own terms."""
    math_terms = [type("T", (), {"name": "math_answer", "weight": 1.0, "params": {}})(),
                  type("T", (), {"name": "format", "weight": 0.5, "params": {}})()]
    fmt_terms = [{"name": "format", "weight": 2.0}]
    samples = [Sample(id="a", task="m", prompt="1+1", answer="2"), Sample(id="b", task="f", prompt="x", answer="9"),
               Sample(id="c", task="m", prompt="2+2", answer="4")]
    texts = ["<think>a</think> \\boxed{2}", "\\boxed{3}", "<think>b</think> \\boxed{1}", "nothing",
             "\\boxed{4}", "<think>c</think> \\boxed{5}"]
    r = Rollout(samples, [comp(t) for t in texts], 2, [[1], [2], [3]])
    total, per_term, counts = score_by_task(r, {"m": math_terms, "f": fmt_terms}, step=3)
    assert total == [1.5, 0.0, 2.0, 0.0, 1.0, 0.5]
    assert per_term["math_answer"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # 0 where the term does not apply (task f)
    assert per_term["format"] == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    # correctness: math_answer for task m, format (its first and only term) for task f
    assert per_term[CORRECT] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert counts == {"math_answer/unparsed": 0, "math_answer/timeouts": 0}
    # one task only: identical to compute_rewards on the whole rollout
    only = Rollout(samples[:1], [comp(t) for t in texts[:2]], 2)
    assert score_by_task(only, {"m": math_terms})[0] == compute_rewards(only, math_terms)[0]
    with pytest.raises(ValueError, match="task 'f' have no reward terms"):
        score_by_task(r, {"m": math_terms})
