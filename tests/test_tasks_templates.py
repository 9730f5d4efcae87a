"""Prompt templates, prompt-length bad rows, data config validation, shipped configs, `rlreason tasks`, a mixture run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlreason.cli import main
from rlreason.errors import ConfigError
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT
from rlreason.tasks.base import DataError
from rlreason.tasks.mixture import build_task
from rlreason.tasks.templates import R1_ZERO, apply_template, prompt_ids, prompt_text, prompt_token_len
from rlreason.types import Sample

LONG = ["data.task=jsonl", "data.params.path=tests/data/long_prompt.jsonl", "data.params.heldout=0"]
SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"


def test_templates_render_question():
    s = Sample(id="x", task="t", answer="5", messages=[{"role": "user", "content": "2+3?"}], meta={"question": "2+3?"})
    assert apply_template(s, "task") is s
    assert apply_template(s, "task", "Be brief.").messages == [{"role": "system", "content": "Be brief."},
                                                               {"role": "user", "content": "2+3?"}]
    assert apply_template(s, "chat", "S").messages[0] == {"role": "system", "content": "S"}
    r1 = apply_template(s, "r1_zero")
    assert r1.messages is None and r1.prompt == R1_ZERO.format(question="2+3?")
    assert r1.prompt.endswith("User: 2+3?\nAssistant:") and "<think>" in r1.prompt and "\\boxed{" in r1.prompt
    assert apply_template(s, "plain").prompt == "2+3?" and apply_template(s, "plain", "Hi").prompt == "Hi\n2+3?"
    # the question is read from a plain prompt too, and the original sample is untouched
    p = Sample(id="y", task="t", answer="1", prompt="0+1?")
    assert apply_template(p, "chat").messages == [{"role": "user", "content": "0+1?"}] and p.messages is None


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
def test_prompt_ids_chat_and_raw_text():
    """messages -> the chat template with the generation prompt; prompt -> the raw text; no special tokens added."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(SHIPPED))
    chat = Sample(id="x", task="t", answer="3", messages=[{"role": "user", "content": "1+2"}])
    assert prompt_text(chat, tok) == "<|user|>1+2<|assistant|>"
    ids = prompt_ids(chat, tok)
    assert ids == [2, 9, 80, 10, 3] == [2] + tok("1+2", add_special_tokens=False).input_ids + [3]
    raw = Sample(id="y", task="t", answer="403", prompt="12*34-5=")
    assert prompt_ids(raw, tok) == [9, 10, 79, 11, 12, 82, 13, 88] and tok.decode(prompt_ids(raw, tok)) == "12*34-5="
    assert prompt_ids(Sample(id="z", task="t", answer="3", prompt="<|user|>1+2<|assistant|>"), tok) == ids
    for s in (chat, raw, apply_template(chat, "chat", "sys"), apply_template(chat, "r1_zero")):
        assert prompt_token_len(s, tok) == len(prompt_ids(s, tok)) > 0
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        prompt_text(chat)


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


@pytest.mark.parametrize("name", ["gsm8k_qwen", "math_r1zero", "reasoning_gym_mix", "default"])
def test_shipped_configs_validate_without_download(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config(str(REPO_ROOT / "configs" / f"{name}.yaml"))
    assert cfg.run.name == name
    if name == "math_r1zero":
        assert cfg.data.template == "r1_zero" and cfg.data.params["preset"] == "math"
    if name == "gsm8k_qwen":
        assert cfg.data.template == "chat" and cfg.model.path == "Qwen/Qwen2.5-1.5B-Instruct"
    if name == "reasoning_gym_mix":
        assert [m.name or m.task for m in cfg.data.mixture] == ["sums", "calc", "arithmetic"]
        task = build_task(cfg.data, 0)  # procedural: builds with no download
        assert {s.task for s in task.eval_samples(4)} == {"sums", "calc", "arithmetic"}


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_tasks_list_and_show(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "tasks", "list")
    assert code == 0 and "jsonl" in out and "gsm8k" in out and "r1_zero" in out and "leg_counting" in out
    code, out, _ = run(capsys, "tasks", "show", "jsonl", "--index", "1", "data.params.path=tests/data/gsm8k_train.jsonl",
                       "data.params.preset=gsm8k", "data.params.heldout=0", "data.template=r1_zero", "run.seed=0")
    assert code == 0
    head, body = out.split("\n", 1)
    assert "from tests/data/gsm8k_train.jsonl:" in head and "template 'r1_zero'" in head
    assert body.startswith("A conversation between User and Assistant.") and body.endswith("Assistant:\n")
    code, out, _ = run(capsys, "tasks", "show", "sums", str(REPO_ROOT / "configs/reasoning_gym_mix.yaml"),
                       f"model.path={tiny_model_dir}", "--split", "eval", "data.system_prompt=Be brief.")
    assert code == 0 and "prompt tokens" in out
    assert out.split("\n", 1)[1].startswith("<|system|>Be brief.<|user|>State the final answer")
    code, _, err = run(capsys, "tasks", "show", "jsonl", "data.params.path=tests/data/bad_missing.jsonl")
    assert code == 2 and err.startswith("rlreason: error: tests/data/bad_missing.jsonl:2: missing field")
    code, _, err = run(capsys, "tasks", "show", "arithmetic", "--split", "eval", "--index", "999", "data.eval_size=3")
    assert code == 2 and "no eval sample 999" in err


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
