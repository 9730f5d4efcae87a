"""rlreason.tasks.mixture: proportions, determinism, entry names, eval sizes, data checks, prompt lengths, a run."""
from __future__ import annotations

import itertools
import json
import logging
import math
from pathlib import Path

import pytest

from rlreason.config_load import load_config
from rlreason.errors import ConfigError
from rlreason.policy import REPO_ROOT
from rlreason.tasks.base import DataError
from rlreason.tasks.mixture import build_task
from rlreason.tasks.templates import prompt_token_len

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


def prompt_lengths(cfg, tok):
    """The prompt token counts of the long-prompt file's rows, as the check counts them (no limit)."""
    cfg.data.max_prompt_tokens = -1
    task = build_task(cfg.data, 0, tok)
    return [prompt_token_len(task.render(task.entries[0], s), tok) for s in task.entries[0].task.all_samples()]


def test_prompt_limit_defaults_to_the_models_room(tiny, caplog):
    """data.max_prompt_tokens=0 (the default): the limit is what the caller passes, the model's context minus
    rollout.max_new_tokens; N > 0 replaces it, -1 turns the check off."""
    _, tok = tiny
    lengths = prompt_lengths(load_config(None, LONG), tok)
    short, long = max(lengths[0], lengths[2]), lengths[1]
    room = (short + long) // 2
    cfg = load_config(None, LONG)
    assert cfg.data.max_prompt_tokens == 0
    with pytest.raises(DataError) as info:
        build_task(cfg.data, 0, tok, max_prompt_tokens=room)
    assert str(info.value) == (f"tests/data/long_prompt.jsonl:2: prompt is {long} tokens, over {room}, the model's "
                               "context minus rollout.max_new_tokens (set data.on_bad_row=skip to skip such rows)")
    build_task(cfg.data, 0, tok, max_prompt_tokens=long)  # at the limit: fine
    build_task(cfg.data, 0, tok)  # the model's context not known: no check
    caplog.set_level(logging.WARNING, logger="rlreason.tasks")
    task = build_task(load_config(None, LONG + ["data.on_bad_row=skip"]).data, 0, tok, max_prompt_tokens=room)
    seen = {s.meta["source"] for s in itertools.islice(task.train_samples(), 40)}
    assert seen == {"tests/data/long_prompt.jsonl:1", "tests/data/long_prompt.jsonl:3"}
    assert [r.getMessage() for r in caplog.records] == [f"skipped 1 over-long prompts (> {room} tokens): jsonl 1"]
    with pytest.raises(DataError, match=f"over data.max_prompt_tokens={room}"):  # an explicit limit wins
        build_task(load_config(None, LONG + [f"data.max_prompt_tokens={room}"]).data, 0, tok, max_prompt_tokens=10**6)
    build_task(load_config(None, LONG + ["data.max_prompt_tokens=-1"]).data, 0, tok, max_prompt_tokens=1)  # no limit


def test_no_room_for_a_prompt_is_one_line(tiny):
    _, tok = tiny
    with pytest.raises(ConfigError) as info:
        build_task(load_config(None, LONG).data, 0, tok, max_prompt_tokens=-8)
    assert str(info.value) == ("data.max_prompt_tokens=0 (auto): the model's context minus rollout.max_new_tokens is -8 "
                               "tokens, no room for a prompt; lower rollout.max_new_tokens or set data.max_prompt_tokens")
    build_task(load_config(None, []).data, 0, tok, max_prompt_tokens=-8)  # procedural prompts are not checked


@pytest.mark.parametrize("command", ["build", "build_eval"])
def test_build_passes_the_models_context_minus_max_new_tokens(tiny_model_dir, tmp_path, command):
    """The tiny test model's context is 128 positions: with rollout.max_new_tokens=100 a prompt may have 28."""
    from rlreason.build import build, build_eval

    cfg = load_config(None, LONG + [f"model.path={tiny_model_dir}", "model.device=cpu", "rollout.max_new_tokens=100",
                                    f"run.root={tmp_path}", "log.progress=false"])
    with pytest.raises(DataError) as info:
        {"build": build, "build_eval": build_eval}[command](cfg)
    assert str(info.value).endswith(" tokens, over 28, the model's context minus rollout.max_new_tokens "
                                    "(set data.on_bad_row=skip to skip such rows)")


@pytest.mark.parametrize("override, needle", [
    ("data.template=chatml", "data.template: unknown name 'chatml'"),
    ("data.on_bad_row=ignore", "data.on_bad_row"),
    ("data.max_prompt_tokens=-2", "data.max_prompt_tokens: must be a number of tokens, 0 (the model's context minus "
                                  "rollout.max_new_tokens) or -1 (no limit)"),
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
