"""LoRA (`model.lora`, r > 0): low-rank adapters on a frozen base model, with PEFT (Hu et al. 2021,
arXiv 2106.09685).

- `attach` wraps the fp32 policy in a PEFT `PeftModel`. Only the adapters' A and B matrices require a
  gradient, so AdamW holds (and a checkpoint keeps) only them and their state. The trainer, the HF engine
  and DDP use the wrapped HF model (`PeftModel.get_base_model()`: the same module, whose linear layers now
  compute W x + (alpha / r) B A x); the `PeftModel` is kept on `Parts.adapter` to save, load and switch off
  the adapters.
- The KL reference is `BaseView`: that same module with its adapters switched off (PEFT's
  `disable_adapter`), so no second copy of the weights is loaded.
- Engines get the merged weights: the HF engine samples the adapter-carrying module in place (the forward
  the trainer differentiates, so no copy and no merge drift in the base weights); vLLM is streamed
  `merged_parameters`, W + (alpha / r) B A computed one layer at a time in fp32 under the base model's
  parameter names (no merged copy of the model is held).
- A checkpoint's `model/` is the adapter in PEFT's format (`adapter_config.json` + `adapter_model.safetensors`,
  fp32, exact on resume); `final/` is the adapter too, or with `model.lora.save_merged` the merged model.
  `load_merged` turns an adapter folder into a plain model (base + adapter merged): `rlreason eval --model`
  and `rlreason export --merge` use it.

Example: a 4096 x 4096 projection with r = 16 trains 2 * 16 * 4096 = 131k numbers instead of 16.8M.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple

import torch

from rlreason.errors import ConfigError, ModelLoadError, first_line
from rlreason.policy import DTYPES, load_model, resolve_model_path

ALL_LINEAR = "all-linear"  # PEFT's name for every linear layer but the output head
ADAPTER_CONFIG = "adapter_config.json"  # what marks a folder as a PEFT adapter


def is_adapter(path) -> bool:
    """Whether `path` (a folder as `model.path` finds it; a Hub id is not) holds a PEFT adapter, not a full model."""
    try:
        where = resolve_model_path(str(path))
    except ModelLoadError:
        return False
    return (Path(where) / ADAPTER_CONFIG).is_file()


def peft_config(lora) -> Any:
    """PEFT's `LoraConfig` for `model.lora`."""
    from peft import LoraConfig

    targets = list(lora.target_modules)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                      target_modules=ALL_LINEAR if targets == [ALL_LINEAR] else targets)


def attach(model: torch.nn.Module, lora, adapter_dir: Optional[Path] = None) -> Any:
    """Wrap `model` (changed in place) in a PEFT model with fresh adapters (B = 0: the base model's outputs),
    or with the adapter saved in `adapter_dir` (resume). Base weights are frozen. The module is in training
    mode only with `lora.dropout` > 0 (as in full fine-tuning, the policy otherwise computes in eval mode)."""
    from peft import get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    try:
        wrapped = get_peft_model(model, peft_config(lora))
    except ValueError as err:  # no module matches a target name
        raise ConfigError(f"model.lora.target_modules: {first_line(err)}") from None
    inner = wrapped.get_base_model()
    if any(isinstance(m, BaseTunerLayer) for m in (inner.get_input_embeddings(), inner.get_output_embeddings())):
        raise ConfigError("model.lora.target_modules: the embeddings and the output head take no adapter here "
                          "(they may be tied, and the engines' merge covers linear layers in the blocks)")
    if adapter_dir is not None:
        load_adapter(wrapped, Path(adapter_dir))
    wrapped.train(lora.dropout > 0)
    return wrapped


def load_adapter(wrapped: Any, folder: Path) -> None:
    """Load the adapter weights saved in `folder` into `wrapped`; every adapter tensor must be found."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from peft.utils import load_peft_weights

    device = next(wrapped.parameters()).device
    weights = load_peft_weights(str(folder), device=str(device))
    expected = set(get_peft_model_state_dict(wrapped))
    if set(weights) != expected:
        odd = sorted(set(weights) ^ expected)
        raise ConfigError(f"{folder}: the saved adapter does not fit model.lora (e.g. '{odd[0]}'; "
                          f"{len(odd)} tensor name(s) differ)")
    set_peft_model_state_dict(wrapped, weights)


def trainable(model: torch.nn.Module) -> Tuple[int, int]:
    """(parameters that train, all parameters) of `model`."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


class BaseView:
    """The KL reference under LoRA: the policy's own module with the adapters switched off for each call.

    It shares every weight with the policy (nothing is copied) and is called like a model; the reference's
    log-probs are computed without gradient, before the update, so the switch never meets a backward pass.
    """

    def __init__(self, wrapped: Any):
        self.wrapped = wrapped

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.wrapped.parameters()

    def __call__(self, *args, **kwargs):
        with self.wrapped.disable_adapter():
            return self.wrapped.get_base_model()(*args, **kwargs)


def has_adapters(model: torch.nn.Module) -> bool:
    """Whether some layer of `model` carries a LoRA adapter (False without PEFT installed)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return False
    return any(isinstance(m, LoraLayer) for m in model.modules())


@torch.no_grad()
def merged_parameters(model: torch.nn.Module) -> Iterator[Tuple[str, torch.Tensor]]:
    """(name, tensor) of every parameter of the merged model, one at a time, under the base model's names.

    A layer with an adapter yields `<layer>.weight` = W + (alpha / r) B A (computed in fp32, outside any
    autocast) instead of its `base_layer.weight`, `lora_A` and `lora_B`; every other parameter is yielded as
    it is. Example: `model.layers.0.self_attn.q_proj.base_layer.weight` -> `model.layers.0.self_attn.q_proj.weight`.
    """
    from peft.tuners.lora import LoraLayer

    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    for name, p in model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        layer_name = owner[: -len(".base_layer")] if owner.endswith(".base_layer") else None
        if any(key in name for key in (".lora_A.", ".lora_B.")):
            continue
        if layer_name not in layers:
            yield name, p.detach()
            continue
        layer, w = layers[layer_name], p.detach()
        if leaf == "weight" and not layer.disable_adapters:
            autocast_off = torch.autocast(w.device.type, enabled=False) if w.device.type in ("cpu", "cuda") \
                else nullcontext()
            with autocast_off:
                for adapter in layer.active_adapters:
                    w = w + layer.get_delta_weight(adapter).to(w.dtype)
        yield f"{layer_name}.{leaf}", w


def merged_state(model: torch.nn.Module, dtype: Optional[torch.dtype] = None) -> dict:
    """The merged model's state dict (names of the base model), floating tensors cast to `dtype` when given."""
    cast = (lambda t: t.to(dtype) if dtype is not None and t.is_floating_point() else t)  # noqa: E731
    return {name: cast(t).contiguous() for name, t in merged_parameters(model)}


def load_merged(folder: str, dtype: str = "float32", device: str = "auto") -> Tuple[torch.nn.Module, Any]:
    """(plain model, tokenizer) of an adapter folder: its base model (`base_model_name_or_path` in
    adapter_config.json) with the adapter merged in, in `dtype`; the tokenizer saved with the adapter."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    where = Path(resolve_model_path(folder))
    base = json.loads((where / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{where / ADAPTER_CONFIG}: names no base_model_name_or_path")
    model, tok = load_model(base, "float32", device)
    if (where / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(str(where))
        tok.pad_token = tok.pad_token or tok.eos_token
        tok.padding_side = "left"
    model = PeftModel.from_pretrained(model, str(where)).merge_and_unload()
    return model.to(DTYPES[dtype]).eval(), tok
