"""The run directory's rules: a new run never destroys or mixes with an earlier one (DESIGN.md: a user's run
directory is sacred).

- `run.name: ''` (the default) gives every run a new directory `<root>/run-YYYYmmdd-HHMMSS` and points the
  link `<root>/latest` at it, so `make run` works every time and keeps every earlier run.
- An existing directory is used only when asked: `run.resume=auto` continues it from its newest checkpoint
  (an unfinished run with no checkpoint starts again from step 0; a finished one is left as it is), and
  `run.overwrite=true` deletes it first. Anything else is refused with one line saying what the directory
  holds and which option does what. `train.log` is never deleted: it is the run's console record.
- Resuming compares the requested config with the checkpoint's: keys in `RESUMABLE` may change (recorded
  in `resumes.jsonl`); any other change is refused, naming the keys, unless `run.allow_config_change=true`.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from omegaconf import OmegaConf

from rlreason import checkpoint
from rlreason.config_load import flat_dict, to_dict

LATEST = "latest"
KEPT = ("train.log",)  # survives a restart or an overwrite: the console record of every attempt
RESUMABLE = ("train.steps", "train.threads", "eval.", "log.", "data.eval_size", "run.resume", "run.overwrite",
             "run.save_every", "run.keep_last", "run.save_on_signal", "run.allow_config_change")
"""Config keys (or key prefixes) a resumed run may change: how long it runs, how it is evaluated, logged and
checkpointed. Everything else defines what the run computes."""


def new_name(root: Path) -> str:
    """`run-YYYYmmdd-HHMMSS`, with `-2`, `-3`, ... when that directory exists."""
    base = time.strftime("run-%Y%m%d-%H%M%S")
    name, k = base, 1
    while (root / name).exists():
        k += 1
        name = f"{base}-{k}"
    return name


def _step_of(ckpt: Path) -> int:
    """The step of a checkpoint folder: from its name, else (a folder named otherwise) from its state."""
    step = checkpoint.named_step(ckpt)
    return step if step is not None else int(checkpoint.load_state(ckpt)["step"])


def describe(run_dir: Path) -> str:
    """What an existing run directory holds, in a few words."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            steps = json.loads(summary.read_text()).get("steps")
        except ValueError:
            steps = "?"
        return f"a finished run ({steps} steps)"
    last = checkpoint.latest(run_dir)
    if last is not None:
        return f"an unfinished run with a checkpoint ({last.name})"
    return "an unfinished run with no checkpoint" if any(run_dir.iterdir()) else "nothing"


def clear(run_dir: Path) -> None:
    """Delete everything in `run_dir` but `KEPT` (an overwrite, or a restart that had nothing to resume)."""
    for p in run_dir.iterdir():
        if p.name in KEPT:
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def decide(cfg, run_dir: Path) -> Tuple[Optional[Path], bool]:
    """(checkpoint to resume or None, whether to clear the directory first); raises FileExistsError naming the
    options when the directory holds a run that the config does not say to continue or replace."""
    ckpt = checkpoint.resolve(cfg.run.resume, run_dir)
    finished = (run_dir / "summary.json").is_file()
    if ckpt is not None:
        if finished and _step_of(ckpt) >= cfg.train.steps:
            raise FileExistsError(f"run directory {run_dir} holds {describe(run_dir)}; nothing to do (raise "
                                  f"train.steps to train it further, or run.overwrite=true to replace it)")
        return ckpt, False
    if not run_dir.exists() or not any(p.name not in KEPT for p in run_dir.iterdir()):
        return None, False
    if cfg.run.overwrite:
        return None, True
    if cfg.run.resume == "auto" and not finished:
        return None, True  # nothing to resume from: start again (train.log keeps the earlier attempt's output)
    if cfg.run.resume == "auto":
        raise FileExistsError(f"run directory {run_dir} holds {describe(run_dir)} and no checkpoint to continue "
                              f"it from; nothing to do (run.overwrite=true replaces it, or pick another run.name)")
    raise FileExistsError(f"run directory {run_dir} holds {describe(run_dir)}; run.resume=auto continues it, "
                          f"run.overwrite=true replaces it, or leave run.name empty for a new directory")


def config_changes(cfg, ckpt: Path) -> Dict[str, Tuple[Any, Any]]:
    """{key: (saved, requested)} for every key whose value differs from the checkpoint's config."""
    have = flat_dict(OmegaConf.to_container(OmegaConf.load(Path(ckpt) / "config.yaml")))
    want = flat_dict(to_dict(cfg))
    return {k: (have.get(k), want.get(k)) for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)}


def check_resume(cfg, ckpt: Path, run_dir: Path) -> Dict[str, Tuple[Any, Any]]:
    """The allowed changes of a resumed run (recorded in `resumes.jsonl` by rank 0); others are refused."""
    changes = config_changes(cfg, ckpt)
    refused = [k for k in changes if not k.startswith(RESUMABLE)]
    if refused and not cfg.run.allow_config_change:
        shown = ", ".join(f"{k} {changes[k][0]!r} -> {changes[k][1]!r}" for k in refused[:4])
        more = f" (+{len(refused) - 4} more)" if len(refused) > 4 else ""
        raise FileExistsError(f"run.resume: {run_dir} was trained with other settings: {shown}{more}; resume with "
                              f"its own config ({ckpt / 'config.yaml'}) or set run.allow_config_change=true")
    return changes


def record_resume(run_dir: Path, ckpt: Path, changes: Dict[str, Tuple[Any, Any]]) -> None:
    """One line in `<run_dir>/resumes.jsonl` per resume: the step, the checkpoint and the changed keys."""
    with open(run_dir / "resumes.jsonl", "a") as f:
        f.write(json.dumps({"step": _step_of(ckpt), "time": time.strftime("%Y-%m-%d %H:%M:%S"), "checkpoint": str(ckpt),
                            "changed": {k: list(v) for k, v in changes.items()}}) + "\n")


def point_latest(run_dir: Path) -> None:
    """Make `<root>/latest` a relative link to `run_dir` (replaced atomically; skipped where links fail)."""
    link = run_dir.parent / LATEST
    tmp = run_dir.parent / f".{LATEST}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(run_dir.name, tmp)
        os.replace(tmp, link)
    except OSError:
        pass
