"""configs/longcot.yaml and models/tiny-longcot: the long-CoT job runs (reduced sizes) and the shipped model is what its rebuild config says."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT
from rlreason.sft_config import SFTConfig
from rlreason import train

MODEL = REPO_ROOT / "models" / "tiny-longcot"


def test_longcot_job_trains_three_steps(tmp_path):
    """3 steps of the long-CoT job at reduced sizes: it trains, evaluates held-out and logs lengths and truncation."""
    cfg = load_config(str(REPO_ROOT / "configs" / "longcot.yaml"), [
        f"run.root={tmp_path}", "run.name=lc", "rollout.prompts_per_step=2", "rollout.group_size=2",
        "rollout.max_new_tokens=40", "eval.max_new_tokens=40", "data.eval_size=4", "eval.every=3",
        "train.steps=3", "log.progress=false"])
    assert cfg.model.path.endswith("tiny-longcot") and cfg.data.task == "longcot_arith"
    train(cfg)
    rows = [json.loads(x) for x in (Path(tmp_path) / "lc" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "rollout/truncated" in r]
    assert len(steps) == 3
    assert all(r["rollout/truncated"] == 1.0 for r in steps)  # 40 tokens cannot hold a ~260-token answer
    assert any("eval/accuracy" in r for r in rows)


def test_shipped_model_matches_its_rebuild_config():
    """The shipped model was made by configs/sft_longcot.yaml, fits the 20 MB budget and the issue's competence band."""
    info = json.loads((MODEL / "sft_info.json").read_text())
    cfg = load_config(str(REPO_ROOT / "configs" / "sft_longcot.yaml"), schema=SFTConfig)
    assert info["sft_config"] == {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    assert (MODEL / "model.safetensors").stat().st_size <= 20 * 2**20
    assert 0.20 <= info["eval/accuracy"] <= 0.60
    assert info["eval/response_length"] >= 100
    model_cfg = json.loads((MODEL / "config.json").read_text())
    assert model_cfg["max_position_embeddings"] >= 2 * 480  # twice the longest default demonstration
