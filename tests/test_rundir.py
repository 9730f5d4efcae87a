"""rlreason/rundir.py and the run's lifecycle: a new run never destroys or mixes with an earlier one, resume
checks the config, a finished run is not re-run, signals stop at a safe point, train.log keeps the console."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlreason import train
from rlreason.cli import main
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"
FAST = [f"model.path={SHIPPED}", "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=12",
        "data.eval_size=4", "log.progress=false", "train.steps=2"]


def cfg_of(root, *extra):
    return load_config(None, [f"run.root={root}", *FAST, *extra])


def snapshot(run_dir: Path) -> dict:
    """Every file under run_dir -> sha256 (train.log aside: it is the append-only console record)."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != "train.log"}


def error_lines(capsys) -> list:
    return [x for x in capsys.readouterr().err.splitlines() if x.startswith("rlreason:")]


def steps_logged(run_dir: Path) -> list:
    return [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_default_name_gives_every_run_its_own_directory(tmp_path):
    first = Path(train(cfg_of(tmp_path))["run_dir"])
    before = snapshot(first)
    second = Path(train(cfg_of(tmp_path))["run_dir"])
    assert first != second and first.name.startswith("run-") and second.name.startswith("run-")
    assert snapshot(first) == before  # untouched
    assert (tmp_path / "latest").resolve() == second.resolve()
    log = (second / "train.log").read_text()
    assert "run directory" in log and "[step 0/2] eval before: held-out accuracy" in log and "held-out accuracy: before RL" in log


def test_existing_run_is_refused_in_one_line_and_left_as_it_was(tmp_path, capsys):
    run = Path(train(cfg_of(tmp_path, "run.name=keep", "run.save_every=1"))["run_dir"])
    before = snapshot(run)
    args = ["train", f"run.root={tmp_path}", "run.name=keep", *FAST]
    capsys.readouterr()
    assert main(args) == 2
    (err,) = error_lines(capsys)  # one line
    assert "holds a finished run (2 steps)" in err and "run.overwrite=true" in err
    assert main(args + ["run.resume=auto"]) == 2  # finished, same steps: nothing to do
    (err,) = error_lines(capsys)
    assert "nothing to do" in err
    assert snapshot(run) == before


def test_overwrite_replaces_the_whole_run_never_mixes(tmp_path):
    run = Path(train(cfg_of(tmp_path, "run.name=x", "run.save_every=1", "train.steps=3"))["run_dir"])
    assert (run / "checkpoints" / "step_00000003").is_dir()
    train(cfg_of(tmp_path, "run.name=x", "run.overwrite=true", "train.steps=1"))
    assert not (run / "checkpoints").exists()  # the old run's checkpoints went with it
    assert steps_logged(run) == [0, 1, 1]  # the new run's records only
    assert (run / "train.log").read_text().count("run directory") >= 2  # both attempts' console lines kept


def test_resume_refuses_other_settings_and_records_allowed_ones(tmp_path, capsys):
    run = Path(train(cfg_of(tmp_path, "run.name=r", "run.save_every=1"))["run_dir"])
    saved = (run / "config.yaml").read_text()
    args = ["train", f"run.root={tmp_path}", "run.name=r", "run.resume=auto", *FAST, "train.steps=3"]
    capsys.readouterr()
    assert main(args + ["train.lr=0.01", "algo.advantage=rloo"]) == 2
    (err,) = error_lines(capsys)
    assert "algo.advantage 'grpo' -> 'rloo'" in err and "train.lr" in err and "run.allow_config_change=true" in err
    assert (run / "config.yaml").read_text() == saved
    assert main(args + ["eval.every=1"]) == 0  # more steps and eval settings: allowed, recorded
    record = json.loads((run / "resumes.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 2 and set(record["changed"]) >= {"train.steps", "eval.every", "run.resume"}
    assert [s for s in steps_logged(run) if s > 0][-1] == 3
    assert main(args + ["train.steps=4", "train.lr=0.01", "run.allow_config_change=true"]) == 0


def test_resume_after_the_last_eval_does_not_log_it_twice(tmp_path):
    """Killed between the final eval and summary.json: the resumed run keeps that eval record."""
    run = Path(train(cfg_of(tmp_path, "run.name=k", "run.save_every=2"))["run_dir"])
    (run / "summary.json").unlink()
    train(cfg_of(tmp_path, "run.name=k", "run.resume=auto"))
    assert steps_logged(run).count(2) == 2  # step 2's training record and one 'after' eval
    assert (run / "summary.json").is_file()


def test_unfinished_run_without_checkpoint_restarts_under_resume_auto(tmp_path):
    run = tmp_path / "u"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 0, "eval/accuracy": 0.5}\n')
    (run / "train.log").write_text("an earlier attempt\n")
    train(cfg_of(tmp_path, "run.name=u", "run.resume=auto"))
    assert steps_logged(run) == [0, 1, 2, 2]
    assert (run / "train.log").read_text().startswith("an earlier attempt\n")


def signalled_run(tmp_path, sig, *extra):
    """Start a long run, send `sig` once step 2 is logged; (exit status, stderr)."""
    args = [sys.executable, "-m", "rlreason", "train", f"run.root={tmp_path}", "run.name=s", *FAST,
            "train.steps=500", "train.threads=1", *extra]
    proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "s" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and '"step": 2' in metrics.read_text()):
        time.sleep(0.2)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_after_the_step_saves_and_names_the_checkpoint(tmp_path, sig):
    code, err = signalled_run(tmp_path, sig)
    assert code == 128 + sig, err[-2000:]
    line = [x for x in err.splitlines() if x.startswith("rlreason: stopped:")]
    assert line and "run.resume=auto" in line[0] and "step_" in line[0], err[-2000:]
    step = int(line[0].split("after step ")[1].split(";")[0])
    assert (tmp_path / "s" / "checkpoints" / f"step_{step:08d}").is_dir()
    assert f"stopped by {signal.Signals(sig).name} after step {step}" in (tmp_path / "s" / "train.log").read_text()
    assert not (tmp_path / "s" / "summary.json").exists()


@pytest.mark.slow
def test_signal_without_save_on_signal_says_there_is_nothing_to_resume(tmp_path):
    code, err = signalled_run(tmp_path, signal.SIGTERM, "run.save_on_signal=false")
    assert code == 143, err[-2000:]
    line = [x for x in err.splitlines() if x.startswith("rlreason: stopped:")]
    assert line and "no checkpoint to resume from" in line[0], err[-2000:]
    assert not (tmp_path / "s" / "checkpoints").exists()
