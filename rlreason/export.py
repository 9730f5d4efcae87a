"""`rlreason export SRC --out DIR [--merge] [--dtype D]`: a LoRA run's adapter as a folder of its own.

SRC is a run directory (its `final/`, else its newest checkpoint), a checkpoint folder (its `model/`) or an
adapter folder. Without `--merge`, DIR is a copy of the adapter in PEFT's format (`adapter_config.json`,
`adapter_model.safetensors`, the tokenizer), loadable with `PeftModel.from_pretrained` on its base model;
with `--merge`, DIR is the base model with the adapter merged in: a plain model folder in `dtype` that any
transformers or vLLM loader reads. DIR is written atomically (`checkpoint.atomic_path`).

Example: `rlreason export runs/lora-r32 --out models/lora-r32-merged --merge --dtype bfloat16`.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from rlreason import checkpoint, lora, precision
from rlreason.errors import ConfigError


def find_adapter(src: str) -> Path:
    """The adapter folder that `src` names: itself, its `model/` (a checkpoint), its `final/` or its newest
    checkpoint's `model/` (a run directory); ConfigError when there is none."""
    path = Path(src)
    newest = checkpoint.latest(path)
    for cand in (path, path / "model", path / "final", newest / "model" if newest else None):
        if cand is not None and lora.is_adapter(cand):
            return cand
    raise ConfigError(f"export: {src} holds no LoRA adapter (adapter_config.json) in itself, model/, final/ or a "
                      f"checkpoint; a full fine-tuning run's final/ is already a plain model")


def export(src: str, out: str, merge: bool = False, dtype: str = "float32") -> Path:
    """Write `src`'s adapter (or with `merge` the merged model in `dtype`) to `out`; returns the adapter used."""
    if dtype not in precision.COMPUTE:
        raise ConfigError(f"export: --dtype '{dtype}' is not {' | '.join(precision.COMPUTE)}")
    adapter = find_adapter(src)
    if not merge:
        with checkpoint.atomic_path(Path(out)) as tmp:
            shutil.copytree(adapter, tmp)
        return adapter
    model, tok = lora.load_merged(str(adapter), precision.MASTER, "cpu")
    state: Optional[dict] = precision.saved_state(model, dtype)
    checkpoint.save_pretrained(model, tok, Path(out), state)
    return adapter
