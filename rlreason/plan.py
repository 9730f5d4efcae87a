"""`rlreason plan CONFIG`: an estimate of the accelerator memory a run needs, stage by stage, before it runs.

The model is built on the `meta` device from its config (no weights are read), so the parameter count is
exact. The rest is arithmetic on the config, per device (one process; under torchrun FSDP2 divides the
weight, gradient and optimizer rows by the world size):

- weights: the policy's fp32 master copy (4 bytes a parameter, also under bfloat16: rlreason/precision.py),
  plus a frozen reference with KL and a value model with a critic (its gradients and AdamW state too);
- gradients: 4 bytes a parameter; AdamW state: 8 bytes a parameter (two fp32 moments); with LoRA
  (`model.lora.r` > 0) only the adapters' parameters have them, and the KL reference is the base model
  itself (no copy);
- update activations for one micro-batch of `tokens` = train.micro_batch_tokens (or micro_batch_size rows of
  prompt + response): per layer and token about 34·h bytes in 16-bit (Korthikanti et al. 2022, arXiv
  2205.05198, without the attention-score term that fused attention avoids), twice that in fp32; with
  gradient checkpointing only each layer's input (2·h bytes, 4·h in fp32) plus one layer's full set;
  plus the fp32 logits and their softmax for the log-probs and entropy (2 × tokens × vocab × 4 bytes);
- generation: the KV cache of one `rollout.batch_size` batch at prompt + max_new_tokens (HF engine; 2 ·
  layers · kv_heads · head_dim bytes a token in 16-bit) or, for vLLM, its bf16 weight copy plus what
  `rollout.gpu_memory_utilization` / `kv_cache_gib` reserves.
Peak = weights + gradients + optimizer + the larger of the update's activations and generation (vLLM's
reservation stays unless sleep mode frees it). Activations and caches are rough (within ~2x); weights,
gradients and optimizer state are exact.
"""
from __future__ import annotations

from typing import List, Tuple

from rlreason.algos import ADVANTAGES

GIB = 2 ** 30


def model_shape(path: str, lora=None) -> dict:
    """Parameter count and the sizes the estimate needs, from the model's config alone (meta device); with
    `lora` (model.lora, r > 0) also the adapters' parameter count (`adapter_params`), PEFT on the meta model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from rlreason.policy import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(path))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    heads = config.num_attention_heads
    params = sum(p.numel() for p in model.parameters())
    adapter = 0
    if lora is not None and lora.r > 0:
        from rlreason import lora as lora_lib

        with torch.device("meta"):
            adapter = lora_lib.trainable(lora_lib.attach(model, lora))[0]
    return {"params": params, "adapter_params": adapter, "hidden": config.hidden_size,
            "layers": config.num_hidden_layers, "vocab": config.vocab_size,
            "kv_heads": getattr(config, "num_key_value_heads", None) or heads,
            "head_dim": getattr(config, "head_dim", None) or config.hidden_size // heads,
            "context": getattr(config, "max_position_embeddings", 0)}


def estimate(cfg, shape: dict) -> List[Tuple[str, float]]:
    """[(line, bytes)] for each component, ending with the peak."""
    n, h, layers, vocab = shape["params"], shape["hidden"], shape["layers"], shape["vocab"]
    r, t, half = cfg.rollout, cfg.train, cfg.model.dtype == "bfloat16"
    prompt = cfg.data.max_prompt_tokens if cfg.data.max_prompt_tokens > 0 else \
        max(0, shape["context"] - r.max_new_tokens) if cfg.data.max_prompt_tokens == 0 else r.max_new_tokens
    seq = prompt + r.max_new_tokens
    tokens = t.micro_batch_tokens or t.micro_batch_size * seq
    trained = shape.get("adapter_params") or n  # LoRA: only the adapters have gradients and AdamW state
    rows = [("policy weights (fp32 masters)", 4.0 * n)]
    if trained != n:
        rows.append((f"LoRA adapters ({trained / 1e6:.2f}M parameters, fp32)", 4.0 * trained))
    if cfg.algo.kl.coef > 0 and trained == n:  # with LoRA the reference is the base model: no copy
        rows.append(("reference weights (fp32, frozen)", 4.0 * n))
    critic = ADVANTAGES.get(cfg.algo.advantage).needs_critic
    if critic:
        rows.append(("critic weights, gradients, AdamW state (fp32)", 16.0 * n))
    rows += [("gradients (fp32)", 4.0 * trained), ("AdamW state (2 fp32 moments)", 8.0 * trained)]
    per_token = (2 if half else 4) * h * (layers + 17 if cfg.model.gradient_checkpointing else 17 * layers)
    act = tokens * per_token + 2 * tokens * vocab * 4.0
    rows.append((f"update activations, one micro-batch of {tokens} tokens"
                 f"{' (gradient checkpointing)' if cfg.model.gradient_checkpointing else ''}", act))
    if r.engine == "vllm":
        gen = 2.0 * n + (r.kv_cache_gib * GIB if r.kv_cache_gib else 0.0)
        note = f"vLLM bf16 weights{f' + {r.kv_cache_gib} GiB KV cache' if r.kv_cache_gib else ''} " \
               f"(on CUDA it reserves {r.gpu_memory_utilization:.0%} of the device instead)"
    else:
        gen = min(r.batch_size, r.prompts_per_step * r.group_size) * seq * 2.0 * layers * shape["kv_heads"] * \
            shape["head_dim"] * (2 if half else 4)
        note = f"HF engine KV cache, {min(r.batch_size, r.prompts_per_step * r.group_size)} sequences of {seq} tokens"
    rows.append((note, gen))
    fixed = sum(b for _, b in rows[:-2])
    asleep = r.engine != "vllm" or r.sleep_level > 0
    rows.append(("peak (fixed + the larger of update and generation)" if asleep else
                 "peak (fixed + update + the engine, which stays without sleep mode)",
                 fixed + (max(act, gen) if asleep else act + gen)))
    return rows


def render(cfg, shape: dict) -> str:
    rows = estimate(cfg, shape)
    unit, size = ("GiB", GIB) if rows[-1][1] >= GIB else ("MiB", 2 ** 20)
    lines = [f"{cfg.model.path}: {shape['params'] / 1e6:.1f}M parameters, {cfg.model.dtype}, one device",
             *[f"  {b / size:9.1f} {unit}  {what}" for what, b in rows]]
    return "\n".join(lines)
