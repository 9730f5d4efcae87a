"""Prompt samplers (uniform, prioritized, curriculum) and DAPO dynamic sampling: statistics and real CPU runs."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rlreason.errors import ConfigError
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT
from rlreason.sampling import SAMPLERS, informative_groups
from rlreason import train
from rlreason.types import Completion, Rollout, Sample, ScoredRollout

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"


def stream(difficulties=None):
    i = 0
    while True:
        meta = {} if difficulties is None else {"difficulty": difficulties[i % len(difficulties)]}
        yield Sample(id=f"s{i}", task="t", prompt=f"p{i}", answer="1", meta=meta)
        i += 1


def test_uniform_follows_the_stream_and_resumes_exactly():
    a = SAMPLERS.get("uniform")(stream(), None, 0)
    assert [s.id for s in a.next(3)] == ["s0", "s1", "s2"]
    b = SAMPLERS.get("uniform")(stream(), None, 0)
    b.load_state_dict(a.state_dict())
    assert [s.id for s in b.next(2)] == [s.id for s in a.next(2)] == ["s3", "s4"]


def test_prioritized_probabilities_by_hand():
    """success rates [0, .5, 1, untried] -> weights [1, .5, 0, 1] / 2.5."""
    s = SAMPLERS.get("prioritized")(stream(), SimpleNamespace(pool_size=4), 0)
    pool = s.pool
    s.update([pool[0], pool[1], pool[2]], [0.0, 0.5, 1.0])
    torch.testing.assert_close(s.probabilities(), torch.tensor([0.4, 0.2, 0.0, 0.4]))
    s.update([pool[1]], [1.0])  # tracked as a running fraction: (.5 + 1) / 2 = .75
    torch.testing.assert_close(s.success_rate()[1], torch.tensor(0.75))


def test_prioritized_draw_frequencies_match_the_probabilities():
    """10,000 single draws from success rates [0, .5, .75, 1] hit prompts in proportion 1 : .5 : .25 : 0."""
    s = SAMPLERS.get("prioritized")(stream(), SimpleNamespace(pool_size=4), seed=3)
    s.update(s.pool, [0.0, 0.5, 0.75, 1.0])
    counts = torch.zeros(4)
    ids = [x.id for x in s.pool]
    for _ in range(10000):
        counts[ids.index(s.next(1)[0].id)] += 1
    freq = counts / counts.sum()
    torch.testing.assert_close(freq, torch.tensor([1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0.0]), atol=0.015, rtol=0)


def test_prioritized_without_replacement_and_all_solved_fallback():
    s = SAMPLERS.get("prioritized")(stream(), SimpleNamespace(pool_size=5), seed=0)
    picks = [x.id for x in s.next(5)]
    assert sorted(picks) == [f"s{i}" for i in range(5)]  # a step never repeats a prompt
    s.update(s.pool, [1.0] * 5)  # everything solved: uniform
    torch.testing.assert_close(s.probabilities(), torch.full((5,), 0.2))
    s.update(s.pool[:1], [0.0])  # one unsolved prompt, three needed: it, then two solved ones
    s.successes[0], s.attempts[0] = 0.0, 1.0
    picks = s.next(3)
    assert picks[0].id == "s0" and len({x.id for x in picks}) == 3


def test_prioritized_state_round_trip():
    a = SAMPLERS.get("prioritized")(stream(), SimpleNamespace(pool_size=8), seed=1)
    a.update(a.next(4), [1.0, 0.0, 0.5, 0.25])
    b = SAMPLERS.get("prioritized")(stream(), SimpleNamespace(pool_size=8), seed=99)
    b.load_state_dict(a.state_dict())
    assert [x.id for x in b.next(4)] == [x.id for x in a.next(4)]


def test_curriculum_orders_by_difficulty_and_cycles():
    s = SAMPLERS.get("curriculum")(stream([3, 1, 2]), SimpleNamespace(pool_size=3), 0)
    assert [x.id for x in s.next(4)] == ["s1", "s2", "s0", "s1"]
    with pytest.raises(RuntimeError, match="meta\\['difficulty'\\]"):
        SAMPLERS.get("curriculum")(stream(), SimpleNamespace(pool_size=3), 0)


def test_informative_groups_and_scored_rollout_selection():
    assert informative_groups([1, 1, 0, 1, 0, 0], 2) == [1]
    assert informative_groups([1, 1, 0, 1, 0, 0], 2, [True, True, True, False, True, True]) == []  # 1 valid
    assert informative_groups([0, 1, 1, 0], 4, [False, True, True, True]) == [0]
    assert informative_groups([0, 1, 1, 1], 4, [False, True, True, True]) == []  # valid ones all equal
    samples = [Sample(id=f"q{i}", task="t", prompt="p", answer="1") for i in range(3)]
    comps = [Completion(text=str(i), token_ids=[i], logprobs=[0.0], finish_reason="stop") for i in range(6)]
    scored = ScoredRollout(Rollout(samples, comps, 2, [[0], [1], [2]]), [1, 1, 0, 1, 0, 0],
                           {"math_answer": [1, 1, 0, 1, 0, 0]}, {"math_answer/unparsed": 1}, [1, 1, 0, 1, 0, 0])
    part = scored.select_groups([1])
    assert [s.id for s in part.rollout.samples] == ["q1"] and [c.text for c in part.rollout.completions] == ["2", "3"]
    assert part.total == [0, 1] and part.correct == [0, 1] and part.rollout.prompt_ids == [[1]]
    both = ScoredRollout.concat([part, scored.select_groups([0])])
    assert both.total == [0, 1, 1, 1] and both.correct == [0, 1, 1, 1] and both.counts == {"math_answer/unparsed": 2}


def test_bad_sampling_config_is_named():
    with pytest.raises(ConfigError, match="data.sampling: unknown name 'priority'"):
        load_config(None, ["data.sampling=priority"])
    with pytest.raises(ConfigError, match="data.pool_size: must be >= rollout.prompts_per_step"):
        load_config(None, ["data.pool_size=2"])


def _run(tmp_path, *extra):
    cfg = load_config(None, [
        f"run.root={tmp_path}", "run.name=s", f"model.path={SHIPPED}", "rollout.prompts_per_step=4",
        "rollout.group_size=4", "rollout.max_new_tokens=24", "train.steps=3", "train.lr=1e-4",
        "data.eval_size=0", "log.progress=false", *extra])
    train(cfg)
    return [json.loads(x) for x in (Path(tmp_path) / "s" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
def test_dynamic_sampling_run_keeps_only_groups_with_a_reward_spread(tmp_path):
    rows = _run(tmp_path, "algo.dynamic_sampling=true", "algo.dynamic_max_rounds=3")
    for r in rows:
        assert 1 <= r["rollout/rounds"] <= 3
        assert 0 <= r["rollout/kept_fraction"] <= 1
        # when a full batch was kept, the loss saw exactly prompts_per_step groups
        if r["rollout/kept_fraction"] * r["rollout/rounds"] * 4 >= 4:
            assert r["rollout/generated_tokens"] >= r["rollout/loss_tokens"]


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
@pytest.mark.parametrize("how", ["prioritized", "curriculum"])
def test_prioritized_and_curriculum_runs_complete(tmp_path, how):
    rows = _run(tmp_path, f"data.sampling={how}", "data.pool_size=16")
    assert [r["step"] for r in rows] == [1, 2, 3]
