"""rlreason/plan.py: the memory estimate counts parameters exactly and lists the stages the config uses."""
from __future__ import annotations

from rlreason.cli import main
from rlreason.config_load import load_config
from rlreason.plan import GIB, estimate, model_shape
from rlreason.policy import REPO_ROOT, load_model

SHIPPED = str(REPO_ROOT / "models" / "tiny-reasoner")


def test_parameter_count_is_exact_without_loading_weights():
    shape = model_shape(SHIPPED)
    assert shape["params"] == sum(p.numel() for p in load_model(SHIPPED, device="cpu")[0].parameters())
    assert shape["layers"] == 4 and shape["context"] == 256


def test_rows_follow_the_config():
    shape = dict(params=10**9, hidden=1024, layers=24, vocab=100_000, kv_heads=8, head_dim=64, context=4096)
    base = ["data.max_prompt_tokens=512", "rollout.max_new_tokens=512", "train.micro_batch_tokens=8192"]
    rows = dict(estimate(load_config(None, base), shape))
    assert rows["policy weights (fp32 masters)"] == 4e9 and rows["AdamW state (2 fp32 moments)"] == 8e9
    act = rows["update activations, one micro-batch of 8192 tokens"]
    assert act == 8192 * 4 * 1024 * 17 * 24 + 2 * 8192 * 100_000 * 4  # fp32: 17 x 4h bytes per layer and token
    with_kl = dict(estimate(load_config(None, base + ["algo.kl.coef=0.1", "algo.advantage=gae"]), shape))
    assert with_kl["reference weights (fp32, frozen)"] == 4e9
    assert with_kl["critic weights, gradients, AdamW state (fp32)"] == 16e9
    ckpt = dict(estimate(load_config(None, base + ["model.dtype=bfloat16", "model.gradient_checkpointing=true"]),
                         shape))
    logits = 2 * 8192 * 100_000 * 4  # fp32 logits and softmax: the same with or without checkpointing
    # bf16 + checkpointing: each layer's input (2h bytes) plus one layer's full set (17 x 2h) per token
    assert ckpt["update activations, one micro-batch of 8192 tokens (gradient checkpointing)"] == \
        8192 * 2 * 1024 * (24 + 17) + logits
    vllm = estimate(load_config(None, base + ["rollout.engine=vllm", "rollout.kv_cache_gib=4"]), shape)
    assert vllm[-2][1] == 2e9 + 4 * GIB and vllm[-1][0].startswith("peak (fixed + update + the engine")


def test_cli_prints_the_plan(capsys):
    assert main(["plan", f"model.path={SHIPPED}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{SHIPPED}: 1.1M parameters, float32") and "peak" in out[-1]


def test_lora_counts_only_the_adapters_and_no_reference_copy():
    """With model.lora the adapters' parameter count is exact (PEFT on the meta model), only they have gradients
    and AdamW state, and the KL reference is the base model itself (no row for a copy)."""
    import pytest

    pytest.importorskip("peft")
    from rlreason import lora

    cfg = load_config(None, [f"model.path={SHIPPED}", "model.lora.r=8", "algo.kl.coef=0.05"])
    shape = model_shape(SHIPPED, cfg.model.lora)
    real = lora.trainable(lora.attach(load_model(SHIPPED, device="cpu")[0], cfg.model.lora))[0]
    assert 0 < shape["adapter_params"] == real < shape["params"]
    rows = dict(estimate(cfg, shape))
    assert rows["gradients (fp32)"] == 4 * real and rows["AdamW state (2 fp32 moments)"] == 8 * real
    assert rows[f"LoRA adapters ({real / 1e6:.2f}M parameters, fp32)"] == 4 * real
    assert "reference weights (fp32, frozen)" not in rows
