"""The long2short sweep files load, expand and validate every run: configs/ablations/long2short.yaml (the
length penalty from the long model) and benchmarks/sweeps/long2short_arith.yaml (grpo vs dr_grpo on the
arithmetic task)."""
import json
from pathlib import Path

from rlreason.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "configs" / "ablations" / "long2short.yaml"
ARITH = ROOT / "benchmarks" / "sweeps" / "long2short_arith.yaml"


def test_long2short_sweep_validates():
    s = load_sweep(str(SWEEP), root="/nonexistent/l2s")
    assert s.configs == ["grpo_w0", "grpo_w0.5", "dr_grpo_w0.5", "kimi_w0.5"] and len(s.runs) == 12
    items = {r.config: r.overrides for r in s.runs if r.seed == 0}
    assert s.base.name == "longcot.yaml" and all(r.steps == 40 for r in s.runs)
    assert all('model.path="models/tiny-longcot-rl"' in o for o in items.values())
    assert 'algo.loss="kimi"' in items["kimi_w0.5"] and 'algo.advantage="dr_grpo"' in items["kimi_w0.5"]
    assert 'algo.advantage="dr_grpo"' in items["dr_grpo_w0.5"] and 'algo.advantage="grpo"' in items["grpo_w0.5"]
    assert all(any("kimi_length" in x and '"weight": 0.5' in x for x in items[c]) for c in s.configs[1:])
    assert not any("kimi_length" in x for x in items["grpo_w0"])  # the control: no penalty


def test_the_long_model_is_shipped_with_how_it_was_made():
    model = ROOT / "models" / "tiny-longcot-rl"
    info = json.loads((model / "rl_info.json").read_text())
    assert info["init"] == "models/tiny-longcot" and info["steps"] == 60 and 0.5 < info["eval/accuracy"] < 0.65
    assert (model / "model.safetensors").stat().st_size < 20e6


def test_long2short_arith_sweep_crosses_baseline_and_penalty():
    s = load_sweep(str(ARITH), root="/nonexistent/l2s_arith")
    assert s.configs == ["grpo__w0", "grpo__w0.1", "dr_grpo__w0", "dr_grpo__w0.1"] and len(s.runs) == 12
    items = {r.config: r.overrides for r in s.runs if r.seed == 0}
    assert all(r.steps == 60 for r in s.runs) and 'algo.loss_agg="seq_sum_norm"' in items["dr_grpo__w0.1"]
    assert any("kimi_length" in x and "warmup" not in x for x in items["grpo__w0.1"])
