"""rlreason.checkpoint: atomic, pruned, exact resume after a SIGKILL, intact when non-finite steps stop a run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlreason import checkpoint
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT
from rlreason.rewards import REWARDS
from rlreason import train
from rlreason.errors import TrainingStopped
from rlreason.types import RewardOutput

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


@needs_shipped
@pytest.mark.slow
def test_sigkill_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    full = train(load_config(None, [f"run.root={tmp_path}", "run.name=full", *ARGS]))
    expected = rows(Path(full["run_dir"]))
    assert [r["step"] for r in expected if "reward/mean" in r] == [1, 2, 3, 4, 5, 6]

    cmd = [sys.executable, "-m", "rlreason", "train", f"run.root={tmp_path}", "run.name=killed", *ARGS]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = [json.loads(x) for x in metrics.read_text().splitlines()] if metrics.is_file() else []
        if any(r.get("step") == 4 and "reward/mean" in r for r in done):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run = tmp_path / "killed"
    assert not (run / "final").exists()
    last = checkpoint.latest(run)
    assert last is not None and 2 <= int(last.name.split("_")[1]) <= 4

    resumed = train(load_config(None, [f"run.root={tmp_path}", "run.name=killed", "run.resume=auto", *ARGS]))
    got = rows(Path(resumed["run_dir"]))
    assert got == expected  # every step, train and eval, identical after the resume
    assert resumed["accuracy_before"] == full["accuracy_before"]
    assert resumed["accuracy_after"] == full["accuracy_after"]
    from safetensors.torch import load_file
    wa = load_file(Path(full["run_dir"]) / "final" / "model.safetensors")
    wb = load_file(Path(resumed["run_dir"]) / "final" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


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
    from safetensors.torch import load_file
    a = load_file(ckpts[0] / "model" / "model.safetensors")
    b = load_file(ckpts[1] / "model" / "model.safetensors")
    assert all(torch.isfinite(v).all() and torch.equal(v, b[k]) for k, v in a.items())  # skipped: unchanged
