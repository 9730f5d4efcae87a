"""configs/ablations/long2short.yaml: the long2short RL sweep file loads, expands and validates every run."""
from pathlib import Path

from rlreason.sweep import load_sweep

SWEEP = Path(__file__).resolve().parents[1] / "configs" / "ablations" / "long2short.yaml"


def test_long2short_sweep_validates():
    s = load_sweep(str(SWEEP), root="/nonexistent/l2s")
    assert len(s.configs) == 9 and len(s.runs) == 27
    assert s.configs[:3] == ["grpo__w0", "grpo__w0.1", "grpo__w0.5"] and "kimi__w0.5" in s.configs
    items = {r.config: r.overrides for r in s.runs if r.seed == 0}
    assert s.base.name == "longcot.yaml" and 'train.steps=100' in items["grpo__w0"]
    assert 'algo.loss="kimi"' in items["kimi__w0.1"] and 'algo.advantage="dr_grpo"' in items["kimi__w0.1"]
    assert any("kimi_length" in x and '"warmup_steps": 50' in x for x in items["dr_grpo__w0.5"])
    assert not any("kimi_length" in x for x in items["grpo__w0"])  # the control: no penalty


def test_long2short_sweep_on_the_arithmetic_task():
    """The file's own comment: the same grid on the arithmetic task with the shipped model, reduced."""
    extra = ["model.path=models/tiny-reasoner", "data.task=arithmetic", "rollout.max_new_tokens=64", "train.steps=150"]
    s = load_sweep(str(SWEEP), extra, root="/nonexistent/l2s_arith", seeds=[0, 1])
    assert len(s.runs) == 18 and all(r.steps == 150 and r.overrides[-9:-7] == extra[-2:] for r in s.runs)
