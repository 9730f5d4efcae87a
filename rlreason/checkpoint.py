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
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import torch

PREFIX = "step_"


@contextmanager
def atomic_path(final: Path, tmp: Optional[Path] = None) -> Iterator[Path]:
    """Yield a temporary path (file or folder) to write; on success it replaces `final` in one rename.

    A crash inside the block leaves `final` as it was (an old version or nothing), never half-written.
    Example: `with atomic_path(run / "final") as tmp: model.save_pretrained(tmp)`.
    """
    final = Path(final)
    tmp = Path(tmp) if tmp else final.with_name(final.name + ".tmp")
    _remove(tmp)
    yield tmp
    if tmp.is_dir():
        _remove(final)
    os.replace(tmp, final)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def save_pretrained(model, tokenizer, out: Path) -> None:
    """`save_pretrained` of the model and its tokenizer into `out`, atomically."""
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def save_tensor_file(obj: Any, out: Path) -> None:
    """`torch.save(obj)` to `out`, atomically."""
    with atomic_path(out) as tmp:
        torch.save(obj, tmp)


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
    with atomic_path(final, root / f".tmp-{final.name}") as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        torch.save({**state, "step": step}, tmp / "state.pt")
        (tmp / "config.yaml").write_text(config_yaml)
        (tmp / "COMPLETE").write_text(f"{step}\n")
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
        with atomic_path(path, path.with_suffix(".jsonl.tmp")) as tmp:
            tmp.write_text("".join(x + "\n" for x in kept))


def _stateful(parts) -> Dict[str, Any]:
    """The run's objects whose `state_dict()` a checkpoint keeps, by their key in state.pt (restore order)."""
    items = {"opt": parts.opt, "sched": parts.sched}
    if parts.critic is not None:
        items.update(critic=parts.critic.model, critic_opt=parts.critic.opt, critic_sched=parts.critic.sched)
    items["sampler"] = parts.sampler
    return items


def save_run(run_dir: Path, parts, config_yaml: str, keep_last: int) -> Optional[Path]:
    """Checkpoint the run's `Parts` at `parts.step` (collective under torchrun: call on every rank; rank 0
    writes). Returns the checkpoint folder on rank 0, None elsewhere."""
    from rlreason import distributed

    state = {k: v.state_dict() for k, v in _stateful(parts).items() if k != "opt"}
    state.update(opt=distributed.full_optimizer_state(parts.opt), rng=rng_state(), bad_steps=parts.bad_steps)
    full = distributed.engine_weights(parts.model, parts.engine_model)  # every rank (FSDP2 gathers)
    path = save(run_dir, parts.step, full, parts.tokenizer, state, config_yaml, keep_last) if distributed.is_main() \
        else None
    distributed.barrier()
    return path


def restore_run(parts, ckpt: Path) -> None:
    """Load a checkpoint's optimizer, schedules, critic, sampler, counters and RNG states into `parts`."""
    from rlreason import distributed

    state = load_state(ckpt)
    for key, obj in _stateful(parts).items():
        obj.load_state_dict(state[key])
    parts.step, parts.bad_steps = state["step"], state["bad_steps"]
    distributed.reshard_optimizer(parts.opt)  # FSDP2: full saved state -> this world size's shards
    set_rng_state(state["rng"])  # last: everything above may have drawn random numbers


def save_final(run_dir: Path, parts) -> None:
    """`<run>/final/` (policy + tokenizer) and, with a critic, `<run>/critic.pt`; call on rank 0."""
    save_pretrained(parts.engine_model, parts.tokenizer, Path(run_dir) / "final")
    if parts.critic is not None:
        save_tensor_file(parts.critic.model.state_dict(), Path(run_dir) / "critic.pt")
