"""Stage 0 (`rlreason/build.py`) and the Python API (`rlreason/__init__.py`): `from rlreason import load_config,
train` runs a training job; `build` hands the loop typed parts, a critic only to an estimator that declares one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import rlreason
from rlreason import load_config, train
from rlreason.build import Parts, build
from rlreason.policy import REPO_ROOT

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"


def small(tmp_path, *extra):
    return load_config(None, [f"run.root={tmp_path}", "run.name=api", f"model.path={SHIPPED}",
                              "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=16",
                              "data.eval_size=4", "log.progress=false", "train.steps=2", *extra])


def test_python_api_trains_two_steps(tmp_path):
    summary = train(small(tmp_path))
    run = Path(summary["run_dir"])
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 2]  # eval before, two steps, eval after
    assert summary["steps"] == 2 and summary["accuracy_after"] is not None and (run / "final").is_dir()
    assert set(rlreason.__all__) >= {"load_config", "train", "Parts", "REWARDS", "TASKS", "ADVANTAGES"}
    assert rlreason.Parts is Parts
    assert rlreason.REWARDS.get("math_answer") and rlreason.TASKS.get("arithmetic")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rlreason.nope  # noqa: B018


def test_build_gives_typed_parts_and_train_takes_them(tmp_path):
    cfg = small(tmp_path, "algo.advantage=gae", "algo.kl.coef=0.1", "train.steps=1", "data.eval_size=0")
    parts = build(cfg)
    assert isinstance(parts, Parts) and parts.step == 0 and parts.resumed_from is None
    assert parts.estimator.needs_critic and parts.critic is not None  # the estimator asked for a critic
    assert parts.ref is not None and parts.kl is not None  # KL on: a reference and its estimator
    assert [t.name for t in parts.scorer.terms["arithmetic"]] == ["math_answer", "format"]
    summary = train(cfg, parts)
    assert parts.step == 1 and (Path(summary["run_dir"]) / "critic.pt").is_file()


def test_no_critic_and_no_reference_unless_asked(tmp_path):
    parts = build(small(tmp_path, "algo.advantage=rloo"))
    assert parts.critic is None and parts.ref is None and parts.kl is None
    assert (parts.estimator.scope, parts.estimator.min_group_size) == ("group", 2)
    parts.engine.close()


def _readme_python_blocks():
    """The README's Python API example (the first block of "## Python API") and docs/extending.md's
    custom-variants example (the block of "## Custom rewards and tasks" that registers `short_answer`)."""

    def blocks(doc, heading):
        text = (REPO_ROOT / doc).read_text()
        section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
        return [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]

    api = blocks("README.md", "## Python API")[0]
    custom = next(b for b in blocks("docs/extending.md", "## Custom rewards and tasks")
                  if '@REWARDS.register("short_answer")' in b)
    return api, custom


def test_readme_custom_variants_example_runs(tmp_path, capsys):
    """The README's example registers a reward term and a batch-scope estimator and trains 2 steps with them."""
    from rlreason import ADVANTAGES, REWARDS

    first, example = _readme_python_blocks()
    compile(first, "README first example", "exec")
    code = example.replace('"run.name=custom"', f'"run.name=custom", "run.root={tmp_path}"')
    assert code != example
    try:
        exec(compile(code, "README custom-variants example", "exec"), {"__name__": "readme_example"})
        assert ADVANTAGES.get("batch_median").scope == "batch"
    finally:
        for reg, name in ((REWARDS, "short_answer"), (ADVANTAGES, "batch_median")):
            if name in reg:
                reg.unregister(name)
    rows = [json.loads(x) for x in (tmp_path / "custom" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "reward/short_answer/mean" in r] == [1, 2]
    assert "'accuracy_after'" in capsys.readouterr().out
