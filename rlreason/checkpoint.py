"""Atomic, verified checkpoints and exact resume (DESIGN.md: checkpoint.py).

`<run>/checkpoints/step_00000012/` holds
- `model/`: the policy and tokenizer (`save_pretrained`, loadable by `rlreason eval --model`); under LoRA the
  adapter alone (PEFT format, `rlreason/lora.py`);
- `state.pt`: optimizer, LR schedule, critic (+ its optimizer and schedule), every RNG state, the prompt
  sampler's state (position, prioritized-sampling statistics), the step and the guard-rail counter; with
  partial rollouts the groups in flight and the finished ones not trained yet, with `rollout.max_staleness`
  the rollouts generated ahead (`rlreason/rollout/sources.py`); under torchrun every rank's random state
  (`rank_rng`) and every rank's in-flight rollouts (`rlreason/rollout/shards.py`), so a resume with the same
  number of ranks is exact;
- `config.yaml`: the resolved config;
- `COMPLETE`, then `MANIFEST.json` (every other file's size and sha256, and the step): written last.
A checkpoint is written into `.tmp-step_…`, flushed to disk (fsync) and renamed into place only when
complete, so a crash mid-save leaves no half checkpoint under a real name; `complete()` skips any folder
without `COMPLETE` or `MANIFEST.json`. A checkpoint damaged later (a file cut short, deleted, a flipped
byte) fails `verify`, and `run.resume=auto` falls back to the newest intact one. Checkpoints written
before manifests (only `COMPLETE`) are loaded unverified. A write that fills the disk leaves no temporary
file and the older checkpoints as they were, and raises one `OSError` (ENOSPC) line.
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import random
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch

from rlreason import jsonl, manifest
from rlreason.errors import ConfigError, first_line

PREFIX = "step_"
# what a full disk looks like when the writer hides the errno: torch's zip writer, safetensors' Rust writer
DISK_FULL_SIGNS = ("No space left on device", "os error 28", "PytorchStreamWriter failed writing file",
                   "unexpected pos")


class CorruptCheckpoint(ConfigError):
    """A checkpoint that fails verification or cannot be loaded; the message names the file (one line)."""


@contextmanager
def atomic_path(final: Path, tmp: Optional[Path] = None) -> Iterator[Path]:
    """Yield a temporary path (file or folder) to write; on success it is flushed to disk and replaces
    `final` in one rename (the parent folder flushed after it).

    A crash inside the block leaves `final` as it was (an old version or nothing), never half-written; an
    error inside it removes the temporary path, and a full disk raises `OSError(ENOSPC)` saying so.
    Example: `with atomic_path(run / "final") as tmp: model.save_pretrained(tmp)`.
    """
    final = Path(final)
    tmp = Path(tmp) if tmp else final.with_name(final.name + ".tmp")
    _remove(tmp)
    try:
        yield tmp
        manifest.fsync_tree(tmp)
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, Exception) and disk_full(err):
            raise disk_full_error(final, err) from None
        raise
    if tmp.is_dir():
        _remove(final)
    os.replace(tmp, final)
    manifest.fsync_path(final.parent)


def disk_full(err: Exception) -> bool:
    """Whether a write failed for want of space (ENOSPC, a quota, or a writer's message saying so)."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    return any(sign in str(err) for sign in DISK_FULL_SIGNS)


def disk_full_error(final: Path, err: Exception) -> OSError:
    """One line: what could not be written, the free space on its disk, and that the run can resume."""
    where = next(p for p in final.parents if p.exists())
    free = shutil.disk_usage(where).free / 2**20
    return OSError(errno.ENOSPC, f"disk full: writing {final} failed ({first_line(err)}); {free:.1f} MiB free on "
                                 f"the disk holding {where}; nothing half-written was kept, and the run is "
                                 f"resumable from its newest checkpoint (run.resume=auto) once space is freed")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def save_pretrained(model, tokenizer, out: Path, state_dict: Optional[dict] = None) -> None:
    """`save_pretrained` of the model (or of `state_dict` in its architecture) and its tokenizer into `out`,
    atomically; config.json names the dtype of the tensors saved."""
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        if state_dict:
            dtype = next(v.dtype for v in state_dict.values() if v.is_floating_point())
            config = json.loads((tmp / "config.json").read_text())
            config["dtype"] = str(dtype).replace("torch.", "")
            (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


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
    """Write checkpoint `step` atomically (MANIFEST.json last, every file on disk before the rename), then
    delete all but the newest `keep_last` complete ones."""
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
        manifest.write(tmp, step)  # last: the size and sha256 of every file above
    for old in complete(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(run_dir: Path) -> List[Path]:
    """Complete checkpoint folders of a run (with `COMPLETE` or `MANIFEST.json`), oldest first; unverified."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if named_step(p) is not None and _marked(p)]
    return sorted(found, key=named_step)


def named_step(folder: Path) -> Optional[int]:
    """The step in a checkpoint folder's name (`step_00000012` -> 12), or None for any other name."""
    name = Path(folder).name
    digits = name[len(PREFIX):]
    return int(digits) if name.startswith(PREFIX) and digits.isdigit() else None


def _marked(folder: Path) -> bool:
    return (folder / "COMPLETE").is_file() or (folder / manifest.NAME).is_file()


def latest(run_dir: Path) -> Optional[Path]:
    """The newest complete checkpoint (unverified; see `newest_intact`), or None."""
    found = complete(run_dir)
    return found[-1] if found else None


def verify(ckpt: Path) -> Optional[str]:
    """None when checkpoint `ckpt` is intact, else one line naming the file at fault: missing, or its size or
    checksum not the one in MANIFEST.json. A checkpoint written before manifests (only `COMPLETE`) passes
    unverified; a folder with neither marker fails."""
    ckpt = Path(ckpt)
    if not (ckpt / manifest.NAME).is_file():
        return None if (ckpt / "COMPLETE").is_file() else "not a complete checkpoint folder (no COMPLETE marker)"
    return manifest.check(ckpt, named_step(ckpt))


def newest_intact(run_dir: Path, log: Callable[[str], Any] = print) -> Optional[Path]:
    """The newest complete checkpoint of a run that passes `verify`, or None. Each newer one that fails is
    skipped with one `log` line: 'checkpoint PATH: REASON; falling back to step_…'."""
    found = complete(run_dir)[::-1]
    for i, ckpt in enumerate(found):
        reason = verify(ckpt)
        if reason is None:
            return ckpt
        nxt = f"falling back to {found[i + 1].name}" if i + 1 < len(found) else "no older checkpoint to fall back to"
        log(f"checkpoint {ckpt}: {reason}; {nxt}")
    return None


def resolve(resume: str, run_dir: Path, log: Optional[Callable[[str], Any]] = None) -> Optional[Path]:
    """`run.resume`: '' -> None (fresh run); 'auto' -> the newest intact checkpoint (corrupt newer ones are
    skipped with one `log` line each; default: print on rank 0) or None when there is none; else the named
    checkpoint folder, which must pass `verify`. Raises CorruptCheckpoint when nothing intact can be
    resumed: a named checkpoint fails `verify`, or 'auto' finds checkpoints and every one fails."""
    from rlreason import distributed

    if not resume:
        return None
    if resume == "auto":
        log = log or (print if distributed.is_main() else (lambda line: None))
        ckpt, found = newest_intact(run_dir, log), complete(run_dir)
        if ckpt is None and found:
            raise CorruptCheckpoint(f"run.resume=auto: none of the {len(found)} checkpoint(s) in "
                                    f"{Path(run_dir) / 'checkpoints'} is intact; set run.resume='' and "
                                    f"run.overwrite=true to start over")
        return ckpt
    path = Path(resume)
    if not _marked(path):
        raise FileNotFoundError(f"run.resume '{resume}': not a complete checkpoint folder "
                                f"(no COMPLETE marker or {manifest.NAME})")
    reason = verify(path)
    if reason:
        raise CorruptCheckpoint(f"run.resume '{resume}': {reason}; the checkpoint is damaged, resume from an "
                                f"older one (run.resume=auto picks the newest intact)")
    return path


def load_state(ckpt: Path) -> Dict[str, Any]:
    """The `state.pt` of a checkpoint; one CorruptCheckpoint line if torch cannot read it (cut short, empty)."""
    path = Path(ckpt) / "state.pt"
    try:
        return torch.load(path, weights_only=False)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        cause = first_line(err).split(". ")[0]
        raise CorruptCheckpoint(f"{path}: cannot be loaded ({type(err).__name__}: {cause}); the checkpoint is "
                                f"damaged, resume from an older one") from None


def truncate_metrics(run_dir: Path, step: int) -> List[str]:
    """Drop metrics.jsonl and samples.jsonl records after `step` (written by the interrupted run after its last
    checkpoint) and every unreadable line (one cut off by the crash, a corrupt one); every good record up to
    `step` is kept byte for byte. A file is rewritten (atomically) only when something is dropped.

    Returns "PATH line N: reason" for each unreadable line dropped, for the caller to report in one line.
    """
    bad: List[str] = []
    for name in ("metrics.jsonl", "samples.jsonl"):
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        kept = []
        for line, rec, problem in jsonl.scan_records(path):
            if problem:
                bad.append(problem)
            elif rec["step"] <= step:
                kept.append(line)
        text = "".join(x + "\n" for x in kept).encode("utf-8")
        if text != path.read_bytes():
            with atomic_path(path, path.with_suffix(".jsonl.tmp")) as tmp:
                tmp.write_bytes(text)
    return bad


def _stateful(parts) -> Dict[str, Any]:
    """The run's objects whose `state_dict()` a checkpoint keeps, by their key in state.pt (restore order)."""
    items = {"opt": parts.opt, "sched": parts.sched}
    if parts.critic is not None:
        items.update(critic=parts.critic.model, critic_opt=parts.critic.opt, critic_sched=parts.critic.sched)
    items["sampler"] = parts.sampler
    if parts.rollouts.stateful:  # partial rollouts in flight, rollouts generated ahead (rollout/sources.py)
        from rlreason.rollout.shards import RankStates

        items["rollouts"] = RankStates(parts.rollouts)  # torchrun: every rank's own, gathered
    return items


def save_run(run_dir: Path, parts, config_yaml: str, keep_last: int) -> Optional[Path]:
    """Checkpoint the run's `Parts` at `parts.step` (collective under torchrun: call on every rank; rank 0
    writes). Returns the checkpoint folder on rank 0, None elsewhere."""
    from rlreason import distributed

    state = {k: v.state_dict() for k, v in _stateful(parts).items() if k != "opt"}
    state.update(opt=distributed.full_optimizer_state(parts.opt), rng=rng_state(), bad_steps=parts.bad_steps)
    if distributed.world() > 1:  # every rank's random state (rank 0's is "rng"): an exact resume at this size
        state["rank_rng"] = [x[0] for x in distributed.all_gather_list([rng_state()])]
    full = distributed.engine_weights(parts.model, parts.engine_model)  # every rank (FSDP2 gathers)
    saved = parts.adapter if parts.adapter is not None else full  # LoRA: model/ holds the adapter alone
    path = save(run_dir, parts.step, saved, parts.tokenizer, state, config_yaml, keep_last) if distributed.is_main() \
        else None
    distributed.barrier()
    return path


def restore_run(parts, ckpt: Path) -> bool:
    """Load a checkpoint's optimizer, schedules, critic, sampler, counters and RNG states into `parts`.

    Returns whether every rank got its own random state back (a torchrun checkpoint resumed at its world
    size); otherwise every rank has rank 0's, and the caller gives ranks > 0 their own streams."""
    from rlreason import distributed

    state = load_state(ckpt)
    for key, obj in _stateful(parts).items():
        obj.load_state_dict(state[key])
    parts.step, parts.bad_steps = state["step"], state["bad_steps"]
    distributed.reshard_optimizer(parts.opt)  # FSDP2: full saved state -> this world size's shards
    ranks = state.get("rank_rng") or []
    own = len(ranks) == distributed.world() > 1
    set_rng_state(ranks[distributed.rank()] if own else state["rng"])  # last: the above may draw random numbers
    return own


def save_final(run_dir: Path, parts) -> None:
    """`<run>/final/` (policy + tokenizer, in `model.dtype`) and, with a critic, `<run>/critic.pt`; rank 0 only.

    Checkpoints keep the fp32 master weights (exact resume); `final/` is what a user loads, in its dtype.
    Under LoRA `final/` is the adapter (fp32, PEFT's format), or with `parts.save_merged` the base model with
    the adapter merged in."""
    from rlreason import lora, precision

    if parts.adapter is not None and not parts.save_merged:
        save_pretrained(parts.adapter, parts.tokenizer, Path(run_dir) / "final")
    elif parts.adapter is not None:
        save_pretrained(parts.engine_model, parts.tokenizer, Path(run_dir) / "final",
                        lora.merged_state(parts.engine_model, precision.COMPUTE[parts.dtype] or torch.float32))
    else:
        save_pretrained(parts.engine_model, parts.tokenizer, Path(run_dir) / "final",
                        precision.saved_state(parts.engine_model, parts.dtype))
    if parts.critic is not None:
        save_tensor_file(parts.critic.model.state_dict(), Path(run_dir) / "critic.pt")
