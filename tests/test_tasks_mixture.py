"""rlreason.tasks.mixture: proportions, determinism, entry names, eval sizes, data checks, prompt lengths, a run."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from rlreason.config_load import load_config
from rlreason.errors import ConfigError
from rlreason.policy import REPO_ROOT
from rlreason.tasks.base import DataError
from rlreason.tasks.mixture import build_task

MIX = ("data.mixture=[{task: arithmetic, weight: 3}, "
       "{task: jsonl, name: gsm, weight: 1, params: {path: tests/data/gsm8k_train.jsonl, preset: gsm8k, "
       "eval_path: tests/data/gsm8k_test.jsonl}}, "
       "{task: reasoning_gym, name: legs, weight: 1, eval_size: 2, params: {dataset: leg_counting}}]")
LONG = ["data.task=jsonl", "data.params.path=tests/data/long_prompt.jsonl", "data.params.heldout=0"]
SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"


def test_mixture_proportions_and_determinism():
    cfg = load_config(None, [MIX])
    task = build_task(cfg.data, seed=0)
    n = 5000
    names = [s.task for s in itertools.islice(task.train_samples(), n)]
    for name, p in (("arithmetic", 0.6), ("gsm", 0.2), ("legs", 0.2)):
        frac = names.count(name) / n
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n), (name, frac)  # 4 standard errors
    again = [s.task for s in itertools.islice(build_task(cfg.data, seed=0).train_samples(), 300)]
    assert again == names[:300]
    assert [s.task for s in itertools.islice(build_task(cfg.data, seed=1).train_samples(), 300)] != names[:300]


def test_mixture_eval_names_and_sizes():
    cfg = load_config(None, [MIX, "data.eval_size=3"])
    task = build_task(cfg.data, seed=0)
    ev = task.eval_samples(cfg.data.eval_size)
    assert [s.task for s in ev] == ["arithmetic"] * 3 + ["gsm"] * 3 + ["legs"] * 2  # per-entry caps
    assert [e.name for e in task.entries] == ["arithmetic", "gsm", "legs"]


def test_over_long_prompt_error_and_skip(tiny):
    _, tok = tiny
    cfg = load_config(None, LONG + ["data.max_prompt_tokens=60"])
    with pytest.raises(DataError) as info:
        build_task(cfg.data, 0, tok)
    assert str(info.value).startswith("tests/data/long_prompt.jsonl:2: prompt is ") and "max_prompt_tokens=60" in str(info.value)
    build_task(cfg.data, 0)  # no tokenizer (config checks, `tasks show`): no length check
    cfg = load_config(None, LONG + ["data.max_prompt_tokens=60", "data.on_bad_row=skip"])
    task = build_task(cfg.data, 0, tok)
    import itertools
    seen = {s.meta["source"] for s in itertools.islice(task.train_samples(), 40)}
    assert seen == {"tests/data/long_prompt.jsonl:1", "tests/data/long_prompt.jsonl:3"}


@pytest.mark.parametrize("override, needle", [
    ("data.template=chatml", "data.template: unknown name 'chatml'"),
    ("data.on_bad_row=ignore", "data.on_bad_row"),
    ("data.max_prompt_tokens=-1", "data.max_prompt_tokens"),
    ("data.mixture=[{task: gsm9k}]", "data.mixture[0].task: unknown name 'gsm9k'"),
    ("data.mixture=[{task: arithmetic}, {task: arithmetic}]", "data.mixture[1].name"),
    ("data.mixture=[{task: arithmetic, weight: 0}]", "data.mixture[0].weight"),
    ("data.mixture=[{task: arithmetic, params: {max_digit: 2}}]", "data.mixture[0].params"),
    ("data.mixture=[{task: arithmetic, rewards: [{name: math_anser}]}]", "data.mixture[0].rewards[0]"),
    ("data.mixture=[{task: jsonl, params: {path: nope.jsonl}}]", "no such file"),
])
def test_bad_data_config_is_one_line(override, needle):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
def test_mixture_config_trains_two_steps(tmp_path):
    cfg = load_config(str(REPO_ROOT / "configs/reasoning_gym_mix.yaml"), [
        f"run.root={tmp_path}", "rollout.prompts_per_step=4", "rollout.group_size=2", "rollout.max_new_tokens=16",
        "train.steps=2", "data.eval_size=2", "log.progress=false"])
    from rlreason import train

    summary = train(cfg)
    rows = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward/mean" in r]
    assert [r["step"] for r in steps] == [1, 2] and "reward/reasoning_gym/mean" in steps[0]
    assert "correct/mean" not in " ".join(steps[0]) and 0 <= steps[0]["reward/accuracy"] <= 1
    evals = [r for r in rows if "eval/accuracy" in r]
    assert evals and {"eval/accuracy/sums", "eval/accuracy/calc", "eval/accuracy/arithmetic"} <= set(evals[0])
    assert evals[0]["eval/size"] == 6
