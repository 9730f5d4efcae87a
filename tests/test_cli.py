"""rlreason.cli: one-line errors (exit 2) for bad keys, missing models and unknown tasks; list/config/tasks output."""
import subprocess
import sys

import pytest

from rlreason.cli import main
from rlreason.policy import REPO_ROOT


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_bad_config_key_is_one_line(capsys):
    code, _, err = run(capsys, "train", "algo.foo=1")
    assert code == 2
    assert err.strip().count("\n") == 0 and "algo.foo" in err and "Traceback" not in err


def test_missing_model_path_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "eval", f"model.path={tmp_path / 'missing'}")
    assert code == 2
    assert err.startswith("rlreason: error: model.path") and err.strip().count("\n") == 0


def test_unknown_task_is_one_line(capsys):
    code, _, err = run(capsys, "train", "data.task=gsm9k")
    assert code == 2
    assert "unknown name 'gsm9k'" in err and "arithmetic" in err and err.strip().count("\n") == 0


def test_config_prints_resolved_yaml(capsys):
    code, out, _ = run(capsys, "config", "train.lr=0.25")
    assert code == 0 and "lr: 0.25" in out and "group_size: 8" in out


def test_config_docs(capsys):
    code, out, _ = run(capsys, "config", "--docs")
    assert code == 0 and "algo.clip_high" in out and "DAPO" in out


def test_python_dash_m_list():
    res = subprocess.run([sys.executable, "-m", "rlreason", "list"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for name in ("grpo", "ppo_clip", "token_mean", "k3", "math_answer", "format", "arithmetic", "hf"):
        assert name in res.stdout


def test_eval_writes_report(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "report.json"
    code, stdout, err = run(capsys, "eval", "--model", tiny_model_dir, "--out", str(out), "data.eval_size=3",
                            "rollout.max_new_tokens=4")
    assert code == 0, err
    import json

    report = json.loads(out.read_text())
    assert report["eval/size"] == 3 and 0.0 <= report["eval/accuracy"] <= 1.0
    assert json.loads(stdout) == report  # stdout is the JSON alone; the readable line is on stderr
    assert err.strip().endswith(f"eval {tiny_model_dir} on arithmetic: held-out accuracy {report['eval/accuracy']:.1%} "
                                f"on 3 problems (greedy), mean length {report['eval/response_length']:.1f} tokens, "
                                f"truncated {report['eval/truncated']:.1%}")


def test_cli_tasks_list_and_show(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "tasks", "list")
    assert code == 0 and "jsonl" in out and "gsm8k" in out and "r1_zero" in out and "leg_counting" in out
    code, out, _ = run(capsys, "tasks", "show", "jsonl", "--index", "1", "data.params.path=tests/data/gsm8k_train.jsonl",
                       "data.params.preset=gsm8k", "data.params.heldout=0", "data.template=r1_zero", "run.seed=0")
    assert code == 0
    head, body = out.split("\n", 1)
    assert "from tests/data/gsm8k_train.jsonl:" in head and "template 'r1_zero'" in head
    assert body.startswith("A conversation between User and Assistant.") and body.endswith("Assistant:\n")
    code, out, _ = run(capsys, "tasks", "show", "sums", str(REPO_ROOT / "configs/reasoning_gym_mix.yaml"),
                       f"model.path={tiny_model_dir}", "--split", "eval", "data.system_prompt=Be brief.")
    assert code == 0 and "prompt tokens" in out
    assert out.split("\n", 1)[1].startswith("<|system|>Be brief.<|user|>State the final answer")
    code, _, err = run(capsys, "tasks", "show", "jsonl", "data.params.path=tests/data/bad_missing.jsonl")
    assert code == 2 and err.startswith("rlreason: error: tests/data/bad_missing.jsonl:2: missing field")
    code, _, err = run(capsys, "tasks", "show", "arithmetic", "--split", "eval", "--index", "999", "data.eval_size=3")
    assert code == 2 and "no eval sample 999" in err


def test_full_disk_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    """checkpoint.py turns a full disk into OSError(ENOSPC, message); the CLI prints that message alone."""
    import errno

    from rlreason import checkpoint
    from rlreason.cli import main
    from rlreason.policy import REPO_ROOT

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, f"disk full: writing {tmp_path}/r/final failed; 0.0 MiB free")

    monkeypatch.setattr(checkpoint, "save_final", full)
    code = main(["train", f"run.root={tmp_path}", "run.name=r", f"model.path={REPO_ROOT / 'models' / 'tiny-reasoner'}",
                 "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=8", "train.steps=1",
                 "data.eval_size=0", "log.progress=false"])
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("rlreason:")]
    assert code == 1 and lines == [f"rlreason: error: disk full: writing {tmp_path}/r/final failed; 0.0 MiB free"]


def test_overrides_may_follow_a_commands_options():
    """`rlreason eval CONFIG --model X key=value` reads key=value as an override; an unknown option stays an error."""
    from rlreason.cli import parse_args

    ns = parse_args(["eval", "configs/default.yaml", "--model", "X", "data.eval_size=2"])
    assert ns.args == ["configs/default.yaml", "data.eval_size=2"] and ns.model == "X"
    assert parse_args(["sweep", "s.yaml", "--parallel", "2", "train.steps=4"]).args == ["s.yaml", "train.steps=4"]
    for argv in (["eval", "c.yaml", "--modle", "X"], ["list", "train.steps=2"]):
        with pytest.raises(SystemExit):
            parse_args(argv)
