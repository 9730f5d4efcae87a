"""`rlreason merge MODEL_A MODEL_B --weight W -o OUT`: weight averaging of two checkpoints (W*A + (1-W)*B).

Kimi k1.5 (arXiv 2501.12599 §2.4, "model merging") averages a long-CoT and a short-CoT model of the same
architecture to get answers of intermediate length without training. Both inputs are model folders as
rlreason saves them (`save_pretrained`: config.json, *.safetensors, the tokenizer), or run directories (their
`final/`). Every floating-point tensor of OUT is `W * a + (1 - W) * b`, computed in float32 and stored in A's
dtype; other tensors (integer buffers) must be equal in both. OUT gets A's config, tokenizer and other files
(not A's sft_info.json, which describes A's training) and the same safetensors layout (shards) as A, plus
`merge_info.json` naming the inputs and W.

Refused, with one line that names the first difference: configs that differ in a key other than those that
do not change the architecture (IGNORED_CONFIG_KEYS), tensor names present in one model only, tensor shapes
that differ. A LoRA adapter folder is refused too: merge it into its base first (`rlreason export RUN --out DIR
--merge`), then average the plain models. OUT must not exist or be empty (a user's folder is never
overwritten) unless `force`; it is written atomically. Example: W=0.25, a=[1., 2.], b=[3., 6.] -> [2.5, 5.].
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from rlreason.errors import ConfigError

IGNORED_CONFIG_KEYS = {"transformers_version", "_name_or_path", "dtype", "torch_dtype", "use_cache"}
"""config.json keys that may differ between the two models: they do not change the architecture."""
WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json")
NOT_COPIED = {"sft_info.json", "merge_info.json"}


def model_folder(path: str) -> Path:
    """The model folder `path` names: itself, or a run directory's `final/`; ConfigError when it is neither,
    or when it is a LoRA adapter."""
    from rlreason.lora import ADAPTER_CONFIG

    p = Path(path)
    for cand in (p, p / "final"):
        if (cand / ADAPTER_CONFIG).is_file():
            raise ConfigError(f"merge: {cand} is a LoRA adapter; merge it into its base model first "
                              f"(rlreason export {path} --out DIR --merge), then merge DIR")
        if (cand / "config.json").is_file():
            if not list(cand.glob("*.safetensors")):
                raise ConfigError(f"merge: {cand} has no *.safetensors weights")
            return cand
    raise ConfigError(f"merge: {path} is not a model folder (no config.json in it or in its final/)")


def _shards(folder: Path) -> List[Path]:
    return sorted(folder.glob("*.safetensors"))


def load_tensors(folder: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """({name: tensor}, {name: shard file name}) of every safetensors file in `folder`."""
    from safetensors.torch import load_file

    tensors, where = {}, {}
    for shard in _shards(folder):
        for name, t in load_file(str(shard)).items():
            tensors[name], where[name] = t, shard.name
    return tensors, where


def check_same_architecture(a: Path, b: Path) -> None:
    """ConfigError naming the first config key that differs (IGNORED_CONFIG_KEYS aside)."""
    ca, cb = (json.loads((f / "config.json").read_text()) for f in (a, b))
    for key in sorted((set(ca) | set(cb)) - IGNORED_CONFIG_KEYS):
        if ca.get(key) != cb.get(key):
            raise ConfigError(f"merge: config.json differs in '{key}': {ca.get(key)!r} in {a}, {cb.get(key)!r} in {b}")


def average(ta: Dict[str, torch.Tensor], tb: Dict[str, torch.Tensor], weight: float) -> Dict[str, torch.Tensor]:
    """{name: W * a + (1 - W) * b} (float32 arithmetic, A's dtype); ConfigError naming the first tensor (by
    name order) that is in one model only, differs in shape, or is an integer tensor that differs."""
    for name in sorted(set(ta) | set(tb)):
        if name not in ta or name not in tb:
            raise ConfigError(f"merge: tensor '{name}' is only in model {'A' if name in ta else 'B'}")
        if ta[name].shape != tb[name].shape:
            raise ConfigError(f"merge: tensor '{name}' has shape {list(ta[name].shape)} in A, {list(tb[name].shape)} in B")
    out = {}
    for name, a in ta.items():
        b = tb[name]
        if a.is_floating_point():
            out[name] = (weight * a.float() + (1.0 - weight) * b.float()).to(a.dtype)
        elif torch.equal(a, b.to(a.dtype)):
            out[name] = a.clone()
        else:
            raise ConfigError(f"merge: tensor '{name}' ({a.dtype}) differs between A and B and cannot be averaged")
    return out


def merge(path_a: str, path_b: str, weight: float, out: str, force: bool = False) -> Dict[str, object]:
    """Write W*A + (1-W)*B to `out` (see the module doc); returns merge_info (also written to OUT)."""
    from safetensors.torch import save_file

    from rlreason.checkpoint import atomic_path

    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"merge: --weight {weight}: must be in [0, 1] (the share of MODEL_A)")
    a, b, dest = model_folder(path_a), model_folder(path_b), Path(out)
    if dest.resolve() in (a.resolve(), b.resolve(), Path(path_a).resolve(), Path(path_b).resolve()):
        raise ConfigError(f"merge: -o {out} is one of the input models; write the merge to a new folder")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())) and not force:
        raise ConfigError(f"merge: -o {out} exists and is not empty; choose a new folder (or --force to replace it)")
    check_same_architecture(a, b)
    (ta, where), (tb, _) = load_tensors(a), load_tensors(b)
    merged = average(ta, tb, weight)
    info = {"model_a": str(a), "model_b": str(b), "weight_a": weight, "weight_b": 1.0 - weight,
            "tensors": len(merged), "params": sum(t.numel() for t in merged.values())}
    with atomic_path(dest) as tmp:
        tmp.mkdir(parents=True)
        for f in a.iterdir():
            if f.is_file() and not f.name.endswith(WEIGHT_SUFFIXES) and f.name not in NOT_COPIED:
                shutil.copy2(f, tmp / f.name)
        for shard in _shards(a):
            save_file({n: merged[n].contiguous() for n in merged if where[n] == shard.name}, str(tmp / shard.name),
                      metadata={"format": "pt"})
        for index in a.glob("*.safetensors.index.json"):
            shutil.copy2(index, tmp / index.name)
        (tmp / "merge_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
