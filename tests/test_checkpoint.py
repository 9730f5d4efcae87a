"""rlreason.checkpoint: atomic, pruned, exact resume after a SIGKILL, intact when non-finite steps stop a run."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlreason import checkpoint, manifest
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT
from rlreason.rewards import REWARDS
from rlreason import train
from rlreason.errors import TrainingStopped
from rlreason.types import RewardOutput
from safetensors.torch import load_file

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"
needs_shipped = pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
ARGS = [f"model.path={SHIPPED}", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=24",
        "train.steps=6", "train.lr=1e-3", "train.threads=1", "data.eval_size=8", "eval.every=2", "log.progress=false",
        "run.save_every=1", "run.keep_last=2", "algo.mini_batches=2", "data.sampling=prioritized", "data.pool_size=12"]


def rows(run_dir: Path):
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.append({k: v for k, v in rec.items() if not k.startswith("perf/")})  # wall times differ
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """(summary, metrics rows) of the 6-step run every SIGKILL test is compared with."""
    full = train(load_config(None, [f"run.root={tmp_path_factory.mktemp('full')}", "run.name=full", *ARGS]))
    return full, rows(Path(full["run_dir"]))


def kill_during_step_4(root: Path, name: str, args=tuple(ARGS)) -> Path:
    """Run `args` in a subprocess, SIGKILL it once step 4's train record is logged; the run directory."""
    cmd = [sys.executable, "-m", "rlreason", "train", f"run.root={root}", f"run.name={name}", *args]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    metrics = root / name / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.is_file() else []
        if any(r.get("step") == 4 and "reward/mean" in r for r in done):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = root / name
    assert not (run / "final").exists()
    return run


def assert_same_run(resumed, full):
    """Every train and eval record, the accuracies and the final weights of `resumed` equal `full`'s."""
    summary, expected = full
    assert [r["step"] for r in expected if "reward/mean" in r] == [1, 2, 3, 4, 5, 6]
    assert rows(Path(resumed["run_dir"])) == expected
    assert resumed["accuracy_before"] == summary["accuracy_before"]
    assert resumed["accuracy_after"] == summary["accuracy_after"]
    wa = load_file(Path(summary["run_dir"]) / "final" / "model.safetensors")
    wb = load_file(Path(resumed["run_dir"]) / "final" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@needs_shipped
@pytest.mark.slow
def test_sigkill_and_resume_reproduces_the_uninterrupted_run(tmp_path, uninterrupted):
    run = kill_during_step_4(tmp_path, "killed")
    last = checkpoint.latest(run)
    assert last is not None and 2 <= int(last.name.split("_")[1]) <= 4
    resumed = train(load_config(None, [f"run.root={tmp_path}", "run.name=killed", "run.resume=auto", *ARGS]))
    assert_same_run(resumed, uninterrupted)  # every step, train and eval, identical after the resume


@needs_shipped
@pytest.mark.slow
def test_sigkill_then_a_corrupt_newest_checkpoint_resumes_from_the_previous_one(tmp_path, uninterrupted, capsys):
    run = kill_during_step_4(tmp_path, "killed")
    previous, newest = checkpoint.complete(run)[-2:]  # run.keep_last=2
    flip_byte(newest / "state.pt")
    capsys.readouterr()
    resumed = train(load_config(None, [f"run.root={tmp_path}", "run.name=killed", "run.resume=auto", *ARGS]))
    out = capsys.readouterr().out.splitlines()
    out = [x.split("] ", 1)[1] if x.startswith("[step ") else x for x in out]  # without the [step S/T] prefix
    fallback = [x for x in out if x.startswith("checkpoint ")]
    assert fallback == [f"checkpoint {newest}: state.pt checksum mismatch; falling back to {previous.name}"]
    assert any(x.startswith(f"resumed from {previous} at step {int(previous.name[5:])}") for x in out)
    assert_same_run(resumed, uninterrupted)  # the steps after `previous` re-run exactly as uninterrupted
    assert all(checkpoint.verify(c) is None for c in checkpoint.complete(run))  # the corrupt one rewritten


PARTIAL = (*ARGS, "rollout.partial_tokens=6", "rollout.partial_max_steps=2")


@needs_shipped
@pytest.mark.slow
def test_sigkill_and_resume_with_partial_rollouts_reproduces_the_uninterrupted_run(tmp_path):
    """The groups in flight and the finished ones not trained yet are checkpointed: the resumed run continues
    them exactly (rollout.partial_tokens, rlreason/rollout/partial.py)."""
    full = train(load_config(None, [f"run.root={tmp_path}", "run.name=full", *PARTIAL]))
    expected = (full, rows(Path(full["run_dir"])))
    assert any(r.get("rollout/staleness_max", 0) > 0 for r in expected[1])  # samples did span steps
    run = kill_during_step_4(tmp_path, "killed", PARTIAL)
    carried = checkpoint.load_state(checkpoint.latest(run))["rollouts"]
    assert carried["inflight"] and any(row.token_ids for g in carried["inflight"] for row in g.rows)
    resumed = train(load_config(None, [f"run.root={tmp_path}", "run.name=killed", "run.resume=auto", *PARTIAL]))
    assert_same_run(resumed, expected)


AHEAD = (*ARGS, "rollout.max_staleness=1")


@needs_shipped
@pytest.mark.slow
def test_sigkill_and_resume_with_max_staleness_reproduces_the_uninterrupted_run(tmp_path):
    """The rollout generated ahead (by the weights of the step before) is checkpointed: the resumed run trains
    on it and generates the next ones exactly as the uninterrupted run (rollout.max_staleness)."""
    full = train(load_config(None, [f"run.root={tmp_path}", "run.name=full", *AHEAD]))
    expected = (full, rows(Path(full["run_dir"])))
    assert [r["rollout/staleness_max"] for r in expected[1] if "reward/mean" in r] == [0, 1, 1, 1, 1, 1]
    run = kill_during_step_4(tmp_path, "killed", AHEAD)
    last = checkpoint.latest(run)
    assert list(checkpoint.load_state(last)["rollouts"]["ahead"]) == [int(last.name.split("_")[1]) + 1]
    resumed = train(load_config(None, [f"run.root={tmp_path}", "run.name=killed", "run.resume=auto", *AHEAD]))
    assert_same_run(resumed, expected)


def flip_byte(path: Path, at: int = -1) -> None:
    """Invert one byte of `path` in place (the middle one by default): same size, different content."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at < 0 else at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_half_written_checkpoints_are_ignored_and_old_ones_pruned(tmp_path, tiny):
    model, tok = tiny
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, model, tok, {"x": step}, "a: 1\n", keep_last=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000002", "step_00000003"]
    # a crash mid-save leaves a .tmp folder, or a folder without COMPLETE: neither is ever loaded
    (tmp_path / "checkpoints" / ".tmp-step_00000004").mkdir()
    broken = tmp_path / "checkpoints" / "step_00000005"
    (broken / "model").mkdir(parents=True)
    assert checkpoint.latest(tmp_path).name == "step_00000003"
    assert checkpoint.load_state(checkpoint.latest(tmp_path))["x"] == 3
    assert checkpoint.resolve("", tmp_path) is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        checkpoint.resolve(str(broken), tmp_path)


def test_truncate_metrics_drops_records_after_the_checkpoint(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 3, "eval/accuracy"')
    (tmp_path / "samples.jsonl").write_text('{"step": 2, "rows": []}\n{"step": 4, "rows": []}\n')
    checkpoint.truncate_metrics(tmp_path, 2)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'
    assert (tmp_path / "samples.jsonl").read_text() == '{"step": 2, "rows": []}\n'


@needs_shipped
def test_non_finite_steps_are_skipped_then_the_run_stops(tmp_path):
    """A reward that turns NaN after 2 calls: steps 3.. are skipped (weights untouched), the run stops after
    max_bad_steps of them, and the checkpoint of the last good step is intact and loadable."""
    calls = {"n": 0}

    @REWARDS.register("_nan_after_two")
    def nan_after_two(rollout):
        calls["n"] += 1
        return RewardOutput([float("nan") if calls["n"] > 2 else float(i % 2) for i in range(len(rollout))])

    try:
        cfg = load_config(None, [f"run.root={tmp_path}", "run.name=nan", *ARGS[:-4], "train.steps=8",
                                 "train.max_bad_steps=2", "rewards=[{name: _nan_after_two}]", "data.eval_size=0"])
        with pytest.raises(TrainingStopped, match="2 consecutive steps had a non-finite loss"):
            train(cfg)
    finally:
        REWARDS._items.pop("_nan_after_two", None)
    recs = [json.loads(x) for x in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/skipped_frac"] if "train/skipped_frac" in r else 0 for r in recs] == [0, 0, 1, 1]
    ckpts = checkpoint.complete(tmp_path / "nan")
    assert [p.name for p in ckpts] == ["step_00000003", "step_00000004"]
    w2 = checkpoint.load_state(ckpts[0])
    assert w2["bad_steps"] == 1
    a = load_file(ckpts[0] / "model" / "model.safetensors")
    b = load_file(ckpts[1] / "model" / "model.safetensors")
    assert all(torch.isfinite(v).all() and torch.equal(v, b[k]) for k, v in a.items())  # skipped: unchanged


def saved(run_dir: Path, tiny, steps=(1, 2, 3), keep_last: int = 3):
    """Checkpoints `steps` of the tiny model in `run_dir`; the folders, oldest first."""
    model, tok = tiny
    for step in steps:
        checkpoint.save(run_dir, step, model, tok, {"x": step, "w": torch.arange(64.0) * step}, "a: 1\n", keep_last)
    return checkpoint.complete(run_dir)


def test_manifest_is_written_last_and_lists_every_file(tmp_path, tiny, monkeypatch):
    seen = {}
    write = manifest.write

    def spy(folder, step):
        seen["files"] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        return write(folder, step)

    monkeypatch.setattr(manifest, "write", spy)
    (ckpt,) = saved(tmp_path, tiny, steps=(7,))
    data = json.loads((ckpt / "MANIFEST.json").read_text())
    on_disk = sorted(p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*") if p.is_file())
    # nothing was written after the manifest: it lists every other file, as it was when the manifest was made
    assert seen["files"] == sorted(data["files"]) == [x for x in on_disk if x != "MANIFEST.json"]
    assert {"state.pt", "config.yaml", "COMPLETE", "model/model.safetensors", "model/config.json"} <= set(data["files"])
    assert data["step"] == 7
    for rel, entry in data["files"].items():
        assert entry == {"size": (ckpt / rel).stat().st_size, "sha256": manifest.sha256(ckpt / rel)}
    assert checkpoint.verify(ckpt) is None


def test_a_failed_manifest_leaves_no_checkpoint(tmp_path, tiny, monkeypatch):
    (first,) = saved(tmp_path, tiny, steps=(1,))

    def broken(folder, step):
        raise ValueError("boom")

    monkeypatch.setattr(manifest, "write", broken)
    with pytest.raises(ValueError, match="boom"):  # not a disk-full error: raised as it was
        saved(tmp_path, tiny, steps=(2,))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [first.name]


def test_every_file_is_fsynced_before_the_rename_and_the_folder_after(tmp_path, tiny, monkeypatch):
    events = []
    fsync, replace = manifest.fsync_path, os.replace
    monkeypatch.setattr(manifest, "fsync_path", lambda p: (events.append(("fsync", Path(p))), fsync(p)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", Path(a))), replace(a, b)))
    (ckpt,) = saved(tmp_path, tiny, steps=(1,))
    tmp = ckpt.parent / ".tmp-step_00000001"
    at = events.index(("replace", tmp))
    synced = {p for kind, p in events[:at] if kind == "fsync"}
    files = {tmp / p.relative_to(ckpt) for p in ckpt.rglob("*")}  # every file and sub-folder, under its temp name
    assert files <= synced and tmp in synced
    assert events[at + 1:] == [("fsync", ckpt.parent)]
    events.clear()
    checkpoint.save_tensor_file({"a": torch.ones(2)}, tmp_path / "critic.pt")  # one file: the same order
    assert events == [("fsync", tmp_path / "critic.pt.tmp"), ("replace", tmp_path / "critic.pt.tmp"),
                      ("fsync", tmp_path)]


CORRUPTIONS = {
    "truncated state.pt": (lambda c: (c / "state.pt").write_bytes((c / "state.pt").read_bytes()[:100]),
                           "state.pt size mismatch (100 bytes, MANIFEST.json says "),
    "empty state.pt": (lambda c: (c / "state.pt").write_bytes(b""), "state.pt size mismatch (0 bytes, "),
    "flipped byte in state.pt": (lambda c: flip_byte(c / "state.pt"), "state.pt checksum mismatch"),
    "truncated weights": (lambda c: (c / "model" / "model.safetensors").write_bytes(
        (c / "model" / "model.safetensors").read_bytes()[:-10]), "model/model.safetensors size mismatch ("),
    "flipped byte in the weights": (lambda c: flip_byte(c / "model" / "model.safetensors"),
                                    "model/model.safetensors checksum mismatch"),
    "deleted tokenizer file": (lambda c: (c / "model" / "tokenizer_config.json").unlink(),
                               "model/tokenizer_config.json missing"),
    "deleted COMPLETE": (lambda c: (c / "COMPLETE").unlink(), "COMPLETE missing"),
    "cut-off manifest": (lambda c: (c / "MANIFEST.json").write_text('{"step": 3, "files": {"state'),
                         "MANIFEST.json unreadable (JSONDecodeError)"),
    "manifest of another step": (lambda c: (c / "MANIFEST.json").write_text(
        (c / "MANIFEST.json").read_text().replace('"step": 3', '"step": 2')), "MANIFEST.json is for step 2, not 3"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_named_in_one_line(tmp_path, tiny, name):
    damage, reason = CORRUPTIONS[name]
    first, second, third = saved(tmp_path, tiny)
    damage(third)
    got = checkpoint.verify(third)
    assert got is not None and got.startswith(reason) and "\n" not in got
    assert checkpoint.complete(tmp_path) == [first, second, third]  # still listed: verification decides
    lines = []
    assert checkpoint.newest_intact(tmp_path, log=lines.append) == second
    assert lines == [f"checkpoint {third}: {got}; falling back to step_00000002"]


def test_auto_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, tiny, capsys):
    first, second, third = saved(tmp_path, tiny)
    assert checkpoint.resolve("auto", tmp_path) == third and capsys.readouterr().out == ""
    flip_byte(third / "state.pt")
    (second / "config.yaml").unlink()
    assert checkpoint.resolve("auto", tmp_path) == first
    assert capsys.readouterr().out.splitlines() == [
        f"checkpoint {third}: state.pt checksum mismatch; falling back to step_00000002",
        f"checkpoint {second}: config.yaml missing; falling back to step_00000001"]
    assert checkpoint.load_state(checkpoint.resolve("auto", tmp_path))["x"] == 1
    flip_byte(first / "model" / "model.safetensors")
    lines = []
    with pytest.raises(checkpoint.CorruptCheckpoint, match=r"none of the 3 checkpoint\(s\) .* is intact"):
        checkpoint.resolve("auto", tmp_path, log=lines.append)
    assert lines[-1] == (f"checkpoint {first}: model/model.safetensors checksum mismatch; "
                         f"no older checkpoint to fall back to")
    assert checkpoint.resolve("auto", tmp_path / "elsewhere") is None  # no checkpoint at all: a fresh start


def test_explicitly_named_corrupt_checkpoint_is_refused_in_one_line(tmp_path, tiny, tiny_model_dir, capsys):
    from rlreason.cli import main

    (ckpt,) = saved(tmp_path / "old", tiny, steps=(2,))
    assert checkpoint.resolve(str(ckpt), tmp_path) == ckpt
    (ckpt / "state.pt").write_bytes(b"")
    with pytest.raises(checkpoint.CorruptCheckpoint, match="state.pt size mismatch"):
        checkpoint.resolve(str(ckpt), tmp_path)
    capsys.readouterr()
    code = main(["train", f"model.path={tiny_model_dir}", f"run.root={tmp_path}", "run.name=new",
                 f"run.resume={ckpt}", "log.progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"rlreason: error: run.resume '{ckpt}': state.pt size mismatch (0 bytes")
    assert not (tmp_path / "new").exists()


def test_checkpoints_without_a_manifest_are_used_unverified(tmp_path, tiny):
    """Checkpoints written before manifests have only COMPLETE: listed, resumable, loaded as before."""
    first, second = saved(tmp_path, tiny, steps=(1, 2))
    for c in (first, second):
        (c / "MANIFEST.json").unlink()
    flip_byte(second / "config.yaml")  # undetectable without a manifest
    assert checkpoint.verify(second) is None and checkpoint.latest(tmp_path) == second
    assert checkpoint.resolve("auto", tmp_path) == second and checkpoint.resolve(str(first), tmp_path) == first
    (first / "COMPLETE").unlink()
    assert checkpoint.complete(tmp_path) == [second]
    assert checkpoint.verify(first) == "not a complete checkpoint folder (no COMPLETE marker)"


@pytest.mark.parametrize("content, cause", [(None, "RuntimeError: PytorchStreamReader failed reading zip archive"),
                                            (b"", "EOFError: Ran out of input")])
def test_a_state_file_torch_cannot_load_is_one_line(tmp_path, tiny, content, cause):
    (ckpt,) = saved(tmp_path, tiny, steps=(1,))
    state = ckpt / "state.pt"
    state.write_bytes(state.read_bytes()[:200] if content is None else content)
    with pytest.raises(checkpoint.CorruptCheckpoint) as info:
        checkpoint.load_state(ckpt)
    assert str(info.value).startswith(f"{state}: cannot be loaded ({cause}") and "\n" not in str(info.value)


TORCH_DISK_FULL = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
TORCH_WRITE_FAILED = RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing "
                                  "file data/0: file write failed")


def safetensors_disk_full():
    from safetensors import SafetensorError

    return SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def half_then(err):
    """A writer that leaves a partial file behind, then fails with `err` (what a full disk does)."""
    def write(obj, path, *args, **kwargs):
        path = Path(path)
        if path.suffix == "" or path.is_dir():  # save_pretrained(folder)
            path.mkdir(parents=True, exist_ok=True)
            path = path / "model.safetensors"
        path.write_bytes(b"\0" * 100)
        raise err
    return write


def assert_disk_full(err: OSError, path: Path):
    text = str(err)
    assert err.errno == errno.ENOSPC and "\n" not in text and f"writing {path} failed" in text
    assert " MiB free on the disk holding " in text and "resumable from its newest checkpoint" in text


@pytest.mark.parametrize("where", ["torch.save", "torch.save write failed", "save_pretrained", "write_text"])
def test_disk_full_during_a_checkpoint_leaves_the_older_ones_intact(tmp_path, tiny, monkeypatch, where):
    model, tok = tiny
    before = saved(tmp_path, tiny, steps=(1, 2), keep_last=2)
    if where.startswith("torch.save"):
        monkeypatch.setattr(torch, "save", half_then(TORCH_DISK_FULL if where == "torch.save" else TORCH_WRITE_FAILED))
    elif where == "save_pretrained":
        monkeypatch.setattr(model, "save_pretrained", lambda out, **kw: half_then(safetensors_disk_full())(None, out))
    else:
        def full(self, text, *args, **kwargs):
            self.touch()
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as info:
        checkpoint.save(tmp_path, 3, model, tok, {"x": 3}, "a: 1\n", keep_last=2)
    assert_disk_full(info.value, tmp_path / "checkpoints" / "step_00000003")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [p.name for p in before]  # no temp
    assert all(checkpoint.verify(p) is None for p in before)


def test_disk_full_while_saving_final_leaves_no_temp(tmp_path, tiny, monkeypatch):
    model, tok = tiny
    checkpoint.save_pretrained(model, tok, tmp_path / "final")
    kept = manifest.sha256(tmp_path / "final" / "model.safetensors")
    monkeypatch.setattr(model, "save_pretrained", lambda out, **kw: half_then(safetensors_disk_full())(None, out))
    with pytest.raises(OSError) as info:
        checkpoint.save_pretrained(model, tok, tmp_path / "final")
    assert_disk_full(info.value, tmp_path / "final")
    monkeypatch.setattr(torch, "save", half_then(TORCH_DISK_FULL))
    with pytest.raises(OSError) as info:
        checkpoint.save_tensor_file({"a": torch.ones(3)}, tmp_path / "critic.pt")
    assert_disk_full(info.value, tmp_path / "critic.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    assert manifest.sha256(tmp_path / "final" / "model.safetensors") == kept  # the old final/ as it was


def test_other_errors_inside_atomic_path_are_not_called_disk_full(tmp_path):
    with pytest.raises(PermissionError, match="not allowed"):
        with checkpoint.atomic_path(tmp_path / "out") as tmp:
            tmp.write_text("half")
            raise PermissionError(errno.EACCES, "not allowed")
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        with checkpoint.atomic_path(tmp_path / "out") as tmp:
            tmp.write_text("half")
            raise RuntimeError("CUDA out of memory")
    assert list(tmp_path.iterdir()) == []


def test_truncate_metrics_on_a_full_disk_keeps_metrics_and_leaves_no_temp(tmp_path, monkeypatch):
    text = '{"step": 1}\n{"step": 2}\n{"step": 3}\n'
    (tmp_path / "metrics.jsonl").write_text(text)

    def full(self, data):
        self.touch()  # what open() does before the first write fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as info:
        checkpoint.truncate_metrics(tmp_path, 2)
    assert_disk_full(info.value, tmp_path / "metrics.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
    assert (tmp_path / "metrics.jsonl").read_text() == text
    monkeypatch.undo()
    assert checkpoint.truncate_metrics(tmp_path, 2) == []  # with space again
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'


def test_truncate_metrics_reports_bad_lines_and_keeps_every_good_record(tmp_path):
    lines = [b'{"step": 1, "a": 0.5}', b'\xff\xfe{"step": 1}', b"[1, 2, 3]", b'{"step": "8"}', b"",
             b'{"step": 2, "eval/accuracy": 0.25}', b'{"step": 3}', b'{"step": 3, "eval/accuracy"']
    (tmp_path / "metrics.jsonl").write_bytes(b"\n".join(lines))
    bad = checkpoint.truncate_metrics(tmp_path, 2)
    path = tmp_path / "metrics.jsonl"
    assert [x.split(": ", 1)[0] for x in bad] == [f"{path} line {n}" for n in (2, 3, 4, 8)]
    assert path.read_bytes() == b'{"step": 1, "a": 0.5}\n{"step": 2, "eval/accuracy": 0.25}\n'
    inode = path.stat().st_ino
    assert checkpoint.truncate_metrics(tmp_path, 2) == [] and path.stat().st_ino == inode  # nothing to drop: untouched
