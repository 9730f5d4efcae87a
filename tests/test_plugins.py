"""rlreason.plugins: custom reward terms and tasks named by import path in a config (examples/my_rewards.py)."""
import json
from pathlib import Path

import pytest

from rlreason.config_load import load_config
from rlreason.errors import ConfigError
from rlreason.policy import REPO_ROOT
from rlreason.rewards import REWARDS, compute_rewards
from rlreason.tasks import TASKS
from rlreason.types import Completion, Rollout

TASK = "examples.my_rewards:TwoNumberSum"
TERM = "examples.my_rewards:last_number"


@pytest.fixture(autouse=True)
def repo_cwd(monkeypatch):
    """Run from the repository root (where `examples` is importable) and drop what the test registered."""
    monkeypatch.chdir(REPO_ROOT)
    yield
    for registry in (REWARDS, TASKS):
        for name in [n for n in registry.names() if ":" in n]:
            registry.unregister(name)


def _comp(text):
    return Completion(text, [1], [0.0], "stop")


def test_import_path_term_scores_like_a_builtin():
    """Module and file paths both register the function; params are checked like a built-in's."""
    cfg = load_config(None, [f"data.task={TASK}", "data.params.max_value=9",
                             "rewards=[{name: 'examples/my_rewards.py:last_number', params: {tolerance: 1}}]"])
    assert TASK in TASKS and TERM in REWARDS  # the task's default_rewards are resolved too
    task = TASKS.get(TASK)(cfg.data.params, seed=0)
    samples = task.eval_samples(2)
    gold = [int(s.answer) for s in samples]
    rollout = Rollout(samples, [_comp(f"so {gold[0]}"), _comp("none"), _comp(f"{gold[1] + 1}"), _comp("7 then 1000")], 2)
    out = compute_rewards(rollout, cfg.rewards)
    name = "examples/my_rewards.py:last_number"
    assert out.per_term[name] == [1.0, 0.0, 1.0, 0.0]
    assert out.counts == {f"{name}/no_number": 1, f"{name}/unchecked": 0}
    assert all(0 <= int(s.answer) <= 18 for s in samples)


def test_custom_task_and_term_train_through_the_cli(tmp_path, tiny_model_dir):
    """examples/custom.yaml's task and term in a real 2-step run: metrics per custom term, held-out eval."""
    from rlreason.cli import main

    code = main(["train", str(REPO_ROOT / "examples/custom.yaml"), f"run.root={tmp_path}", "run.name=c",
                 f"model.path={tiny_model_dir}", "rollout.prompts_per_step=2", "rollout.group_size=2",
                 "rollout.max_new_tokens=6", "train.steps=2", "data.eval_size=3", "log.progress=false"])
    assert code == 0
    records = [json.loads(x) for x in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward/mean" in r]
    assert len(steps) == 2 and all(f"reward/{TERM}/mean" in r and f"reward/{TERM}/no_number" in r for r in steps)
    assert [r["eval/size"] for r in records if "eval/accuracy" in r] == [3, 3]


@pytest.mark.parametrize("override, message", [
    ("data.task=nomodule.sub:Task", "data.task: importing 'nomodule.sub' failed: No module named 'nomodule'"),
    ("data.task=examples.my_rewards:Nope", "data.task: examples.my_rewards has no 'Nope'"),
    (f"data.task={TERM}", "data.task: 'examples.my_rewards:last_number' is not a subclass of rlreason.tasks.base.Task"),
    ("data.task=examples/none.py:X", "data.task: no such file examples/none.py"),
    ("data.task=:TwoNumberSum", "data.task: ':TwoNumberSum' is not an import path"),
    (f"rewards=[{{name: '{TASK}'}}]", "rewards[0].name: 'examples.my_rewards:TwoNumberSum' is not a function"),
    (f"rewards=[{{name: '{TERM}', params: {{tol: 1}}}}]", "rewards[0].params: reward term "
     "'examples.my_rewards:last_number': unknown param 'tol'; accepted: tolerance"),
    ("data.params.max_value=0", "data.params: max_value must be in [1, 1000000] (got 0)"),
])
def test_bad_import_path_is_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"data.task={TASK}", override])
    assert str(err.value).startswith(f"config + overrides: {message}") and "\n" not in str(err.value)


def test_error_inside_the_module_and_task_without_rewards(tmp_path):
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    (tmp_path / "bare.py").write_text("from rlreason.tasks.base import Task\n\nclass Bare(Task):\n    name = 'bare'\n")
    with pytest.raises(ConfigError, match=r"rewards\[0\].name: importing .*broken.py failed: ZeroDivisionError"):
        load_config(None, [f"rewards=[{{name: '{tmp_path}/broken.py:f'}}]"])
    with pytest.raises(ConfigError, match="rewards: task '.*bare.py:Bare' declares no default_rewards"):
        load_config(None, [f"data.task={tmp_path}/bare.py:Bare"])
    load_config(None, [f"data.task={tmp_path}/bare.py:Bare", "rewards=[{name: format}]"])  # terms given: fine


def test_score_cli_takes_an_import_path_task(tmp_path, capsys):
    from rlreason.cli import main

    load_config(None, [f"data.task={TASK}"])
    task = TASKS.get(TASK)({}, seed=0)
    gold = [s.answer for s in task.eval_samples(2)]
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"index": i, "completion": c}) + "\n" for i, c in enumerate([gold[0], "x"])))
    for name in (TASK, "examples/my_rewards.py:TwoNumberSum"):
        assert main(["score", name, "--completions", str(rows)]) == 0
        out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [r["total"] for r in out] == [1.0, 0.0]
