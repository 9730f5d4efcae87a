"""Every ablation and recipe YAML, and every aggregation, trains for real on CPU with the shipped model."""
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlreason.algos import ADVANTAGES, LOSS_AGGS, LOSSES
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT
from rlreason import train

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"
pytestmark = pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
ABLATIONS = sorted(p for p in (REPO_ROOT / "configs" / "ablations").glob("*.yaml")
                   if not {"grid", "list"} & set(OmegaConf.load(p)))  # sweep files: tests/test_sweep.py
RECIPES = sorted((REPO_ROOT / "configs" / "recipes").glob("*.yaml"))
TINY = ["rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=24", "train.lr=1e-4",
        "data.eval_size=0", "log.progress=false", f"model.path={SHIPPED}"]


def _train(tmp_path, path, overrides, steps):
    cfg = load_config(path, [f"run.root={tmp_path}", "run.name=s", f"train.steps={steps}", *TINY, *overrides])
    summary = train(cfg)
    rows = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert all(isinstance(r["loss/total"], float) for r in rows)  # finite (non-finite values are logged as strings)
    return cfg, rows


def test_every_estimator_and_loss_has_an_ablation_yaml():
    chosen = {(OmegaConf.load(p).get("algo") or {}).get(k) for p in ABLATIONS for k in ("advantage", "loss")}
    assert set(ADVANTAGES.names()) - chosen == set()
    assert set(LOSSES.names()) - chosen == set()


@pytest.mark.parametrize("path", ABLATIONS + RECIPES, ids=[p.stem for p in ABLATIONS + RECIPES])
def test_yaml_trains_three_steps(tmp_path, path):
    cfg, rows = _train(tmp_path, str(path), [], 3)
    if cfg.algo.advantage == "gae":  # the critic trained alongside
        assert all("loss/value" in r and "critic/value_mean" in r for r in rows)
        assert (Path(tmp_path) / "s" / "critic.pt").is_file()
    if cfg.algo.kl.coef > 0:
        assert all(r["policy/kl"] >= 0 for r in rows)


@pytest.mark.parametrize("name", LOSS_AGGS.names())
def test_every_aggregation_trains(tmp_path, name):
    _train(tmp_path, None, [f"algo.loss_agg={name}"], 2)
