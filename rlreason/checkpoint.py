"""Atomic checkpoints and exact resume (DESIGN.md: checkpoint.py).

`<run>/checkpoints/step_00000012/` holds
- `model/`: the policy and tokenizer (`save_pretrained`, loadable by `rlreason eval --model`);
- `state.pt`: optimizer, LR schedule, critic (+ its optimizer and schedule), every RNG state, the prompt
  sampler's state (position, prioritized-sampling statistics), the step and the guard-rail counter;
- `config.yaml`: the resolved config;
- `COMPLETE`: written last.
A checkpoint is written into `.tmp-step_…` and renamed into place only when complete, so a crash
mid-save leaves no half checkpoint under a real name; `latest()` also skips any folder without `COMPLETE`.
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import torch

PREFIX = "step_"


def rng_state() -> Dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, step: int, model, tokenizer, state: Dict[str, Any], config_yaml: str, keep_last: int) -> Path:
    """Write checkpoint `step` atomically, then delete all but the newest `keep_last` complete ones."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    torch.save({**state, "step": step}, tmp / "state.pt")
    (tmp / "config.yaml").write_text(config_yaml)
    (tmp / "COMPLETE").write_text(f"{step}\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in complete(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(run_dir: Path) -> list:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "COMPLETE").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest(run_dir: Path) -> Optional[Path]:
    found = complete(run_dir)
    return found[-1] if found else None


def resolve(resume: str, run_dir: Path) -> Optional[Path]:
    """`run.resume`: '' -> None (fresh run); 'auto' -> newest complete checkpoint or None; else a checkpoint folder."""
    if not resume:
        return None
    if resume == "auto":
        return latest(run_dir)
    path = Path(resume)
    if not (path / "COMPLETE").is_file():
        raise FileNotFoundError(f"run.resume '{resume}': not a complete checkpoint folder (no COMPLETE marker)")
    return path


def load_state(ckpt: Path) -> Dict[str, Any]:
    return torch.load(Path(ckpt) / "state.pt", weights_only=False)


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop metrics.jsonl and samples.jsonl records after `step` (written by the interrupted run after its last
    checkpoint), and a last line cut off by the crash."""
    import json

    for name in ("metrics.jsonl", "samples.jsonl"):
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError):  # a line cut off by the crash
                continue
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(x + "\n" for x in kept))
        os.replace(tmp, path)
