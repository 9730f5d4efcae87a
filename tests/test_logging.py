"""Logging: metrics.jsonl always, samples.jsonl, one-line eval summaries, and a real offline W&B run read back."""
import json
import struct
import time
from pathlib import Path

import pytest

from rlreason.errors import ConfigError
from rlreason.config_load import load_config
from rlreason.logging import MetricsLogger, eval_line
from rlreason.types import Completion, Rollout, Sample


def _rollout():
    samples = [Sample(id="0", task="t", answer="2", prompt="1+1="),
               Sample(id="1", task="t", answer="5", messages=[{"role": "user", "content": "2+3"}])]
    comps = [Completion(t, [1], [0.0], "stop") for t in ("\\boxed{2}", "\\boxed{3}", "\\boxed{5}", "\\boxed{6}")]
    return Rollout(samples=samples, completions=comps, group_size=2)


def _step_metrics(r):
    return {"reward/mean": r, "reward/accuracy": r, "rollout/response_length": 10.0, "loss/policy": float("nan")}


def test_metrics_and_samples_jsonl(tmp_path):
    cfg = load_config(None, ["log.progress=false", "log.samples_every=2", "train.steps=3"])
    log = MetricsLogger.from_config(cfg, tmp_path)
    assert log.wandb is None  # disabled by default: wandb is never imported
    for step in (1, 2, 3):
        log.step(step, _step_metrics(0.1 * step))
        log.samples(step, _rollout(), [1.0, 0.0, 1.0, 0.0])
    log.log(3, {"eval/accuracy": 0.5})
    log.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 3]
    assert lines[0]["reward/mean"] == pytest.approx(0.1) and lines[0]["loss/policy"] == "nan"
    assert lines[3] == {"step": 3, "eval/accuracy": 0.5}
    recs = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2]  # every 2 steps only
    rows = recs[0]["rows"]
    assert [r["prompt"] for r in rows[:3]] == ["1+1=", "1+1=", "user: 2+3"]
    assert [r["reward"] for r in rows] == [1.0, 0.0, 1.0, 0.0] and rows[1]["completion"] == "\\boxed{3}"


def test_eval_line_one_line_with_and_without_pass_at_k():
    m = {"eval/accuracy": 0.25, "eval/size": 8, "eval/response_length": 12.0, "eval/truncated": 0.0}
    assert eval_line("before", m) == ("eval before: held-out accuracy 25.0% on 8 problems (greedy), "
                                      "mean length 12.0 tokens, truncated 0.0%")
    m.update({"eval/samples": 8, "eval/avg@1": 0.3, "eval/pass@1": 0.3, "eval/avg@8": 0.3, "eval/pass@8": 0.75})
    line = eval_line("after", m)
    assert "\n" not in line and line.endswith("; 8 samples: avg@1 30.0% pass@1 30.0%, avg@8 30.0% pass@8 75.0%")
    assert eval_line("after", {}) is None


def test_plain_progress_lines_when_not_a_terminal(tmp_path, capsys):
    """Not a terminal: no tqdm redraw; a `[step S/T]` line at the first step, every progress_every steps and the
    last; print_every lines and written lines carry the step too."""
    log = MetricsLogger(tmp_path, 7, progress_every=3, print_every=5, interactive=False)
    log.write("starting")
    for step in range(1, 8):
        log.step(step, _step_metrics(0.5))
    log.close()
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    assert all(x.startswith("[step ") for x in lines) and lines[0] == "[step 0/7] starting"
    progress = [x for x in lines if "reward 0.500, accuracy 50.0%, length 10.0 tokens" in x]
    assert [x.split("]")[0] for x in progress] == ["[step 1/7", "[step 3/7", "[step 6/7", "[step 7/7"]
    assert "s/step, about" in progress[1] and "left" not in progress[-1]
    assert [x.split("]")[0] for x in lines if "reward/mean=0.5" in x] == ["[step 5/7"]
    assert "[step 7/7] reward" in (tmp_path / "train.log").read_text()  # the plain lines are in train.log too
    auto = MetricsLogger(tmp_path, 100, interactive=False)
    assert auto.plain_every == 5  # progress_every=0: about 20 lines a run
    auto.close()
    off = MetricsLogger(tmp_path, 100, progress=False, interactive=False)
    assert off.plain_every == 0
    off.close()


def _train_cli(tmp_path, model_dir, *extra):
    import os
    import subprocess
    import sys

    args = [sys.executable, "-m", "rlreason", "train", f"run.root={tmp_path}", "run.name=r", "run.overwrite=true",
            f"model.path={model_dir}", "rollout.prompts_per_step=2", "rollout.group_size=2",
            "rollout.max_new_tokens=6", "train.steps=4", "data.eval_size=3", "eval.every=2", "log.print_every=2", *extra]
    quiet = ("HF_HUB_DISABLE_PROGRESS_BARS", "VLLM_LOGGING_LEVEL", "TRANSFORMERS_VERBOSITY")  # set by earlier tests
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    res = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout, res.stderr


def test_redirected_training_run_prints_plain_stepped_lines(tmp_path, tiny_model_dir):
    """A real `rlreason train` with stdout and stderr piped: no carriage return anywhere, every stdout line
    starts with its step, the line before the first eval says what it does, no third-party bars unless
    log.verbose (transformers' 'Writing model shards' bar when final/ is saved)."""
    out, err = _train_cli(tmp_path, tiny_model_dir)
    assert "\r" not in out + err
    lines = out.splitlines()
    assert lines and all(x.startswith("[step ") for x in lines), out
    intro = next(i for i, x in enumerate(lines) if "eval: 3 held-out problems, greedy" in x)
    assert intro < next(i for i, x in enumerate(lines) if "eval before: held-out accuracy" in x)
    assert "every 2 steps" in lines[intro]
    assert [x.split("]")[0] for x in lines if "reward/mean=" in x] == ["[step 2/4", "[step 4/4"]
    assert any(x.startswith("[step 2/4] eval during") for x in lines)
    assert "Writing model shards" not in err and "Loading weights" not in err
    _, err = _train_cli(tmp_path, tiny_model_dir, "log.verbose=true")
    assert "Writing model shards" in err


def test_log_config_validation():
    with pytest.raises(ConfigError, match="log.wandb: 'offlin' is not disabled"):
        load_config(None, ["log.wandb=offlin"])
    with pytest.raises(ConfigError, match="log.samples_every"):
        load_config(None, ["log.samples_every=-1"])
    with pytest.raises(ConfigError, match="log.progress_every: must be >= 0"):
        load_config(None, ["log.progress_every=-1"])


def read_wandb_records(path: Path):
    """Records of a .wandb file: a LevelDB-style log (32 KiB blocks of crc32/length/type-framed chunks)
    after a 7-byte ':W&B' header, each record a wandb_internal_pb2.Record."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf, out = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (n == 0 and kind == 0):  # block trailer / zero padding
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # FULL or LAST chunk
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


def _complete_records(path: Path, timeout: float = 60.0):
    """wandb-core writes the file asynchronously after finish(): wait until the exit record is on disk."""
    deadline = time.time() + timeout
    while True:
        recs = read_wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in recs) or time.time() > deadline:
            return recs
        time.sleep(0.2)


def test_wandb_offline_run_records_config_metrics_and_table(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # any network use would fail
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    cfg = load_config(None, ["log.progress=false", "log.wandb=offline", "log.project=proj", "log.group=grp",
                             "log.tags=[a,b]", "log.samples_every=1", "run.name=myrun", "train.lr=0.00123"])
    log = MetricsLogger.from_config(cfg, tmp_path)
    log.step(1, _step_metrics(0.5))
    log.samples(1, _rollout(), [1.0, 0.0, 1.0, 0.0])
    log.log(1, {"eval/accuracy": 0.25, "eval/pass@4": 0.75})
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2  # always written, W&B or not
    files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1 and files[0].stat().st_size > 0
    recs = _complete_records(files[0])
    run = next(r.run for r in recs if r.WhichOneof("record_type") == "run")
    assert (run.project, run.display_name, run.run_group, list(run.tags)) == ("proj", "myrun", "grp", ["a", "b"])
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["train"]["lr"] == pytest.approx(0.00123) and config["log"]["wandb"] == "offline"
    history = {}
    for r in recs:
        if r.WhichOneof("record_type") == "history":
            for item in r.history.item:
                history["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
    assert history["reward/mean"] == pytest.approx(0.5) and history["eval/pass@4"] == pytest.approx(0.75)
    assert history["samples/_type"] == "table-file" and history["samples/nrows"] == 4
    table = json.loads(next(files[0].parent.glob("files/media/table/samples_*.table.json")).read_text())
    assert table["columns"] == ["prompt", "completion", "reward", "answer"] and table["data"][1][1] == "\\boxed{3}"


def test_training_run_logs_pass_at_k_samples_and_wandb_offline(tmp_path, tiny_model_dir, monkeypatch):
    """The trainer wiring: eval.samples, log.samples_every and log.wandb=offline in a real 2-step run."""
    pytest.importorskip("wandb")
    from rlreason import train

    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    cfg = load_config(None, [
        f"run.root={tmp_path}", "run.name=obs", f"model.path={tiny_model_dir}", "rollout.prompts_per_step=2",
        "rollout.group_size=2", "rollout.max_new_tokens=6", "train.steps=2", "train.lr=1e-3", "data.eval_size=3",
        "log.progress=false", "eval.samples=2", "eval.pass_k=[1,2]", "log.samples_every=1", "log.wandb=offline"])
    train(cfg)
    run = tmp_path / "obs"
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval/accuracy" in r]
    assert len(evals) == 2 and all(r["eval/samples"] == 2 and 0 <= r["eval/pass@2"] <= 1 for r in evals)
    assert [json.loads(x)["step"] for x in (run / "samples.jsonl").read_text().splitlines()] == [1, 2]
    recs = _complete_records(next((run / "wandb").glob("offline-run-*/run-*.wandb")))
    keys = {"/".join(i.nested_key) or i.key for r in recs if r.WhichOneof("record_type") == "history"
            for i in r.history.item}
    assert {"reward/mean", "eval/pass@2", "samples/_type"} <= keys


def test_wandb_resumed_run_continues_the_same_run(tmp_path, monkeypatch):
    """A resumed training run (resume_step > 0) reopens the W&B run whose id the first run left in the run dir;
    a fresh run (resume_step 0) starts a new one."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    cfg = load_config(None, ["log.progress=false", "log.wandb=offline", "run.name=r"])
    ids = []
    for resume_step in (0, 1, 0):
        log = MetricsLogger.from_config(cfg, tmp_path, resume_step=resume_step)
        ids.append(log.wandb.run.id)
        log.step(resume_step + 1, _step_metrics(0.5))
        log.close()
        assert (tmp_path / "wandb_run_id").read_text().strip() == ids[-1]
    assert ids[1] == ids[0] and ids[2] != ids[0]
    runs = [_complete_records(f) for f in sorted((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))]
    assert len(runs) == 3
    resumed = [next(r.run for r in recs if r.WhichOneof("record_type") == "run") for recs in runs]
    assert sorted(r.run_id for r in resumed).count(ids[0]) == 2
