"""Every registered advantage estimator, policy loss and aggregation runs two real RL steps on CPU."""
import json
from pathlib import Path

import pytest

from rlreason.algos import ADVANTAGES, LOSS_AGGS, LOSSES
from rlreason.config import load_config
from rlreason.policy import REPO_ROOT
from rlreason.trainer import train

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"
pytestmark = pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")

CASES = ([("algo.advantage", n) for n in ADVANTAGES.names()] + [("algo.loss", n) for n in LOSSES.names()]
         + [("algo.loss_agg", n) for n in LOSS_AGGS.names()])


@pytest.mark.parametrize("key, name", CASES, ids=[f"{k.split('.')[1]}={n}" for k, n in CASES])
def test_two_steps(tmp_path, key, name):
    cfg = load_config(None, [
        f"run.root={tmp_path}", "run.name=s", f"model.path={SHIPPED}", "rollout.prompts_per_step=4",
        "rollout.group_size=4", "rollout.max_new_tokens=24", "train.steps=2", "train.lr=1e-4",
        "data.eval_size=0", "log.progress=false", f"{key}={name}"])
    summary = train(cfg)
    rows = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(isinstance(r["loss/total"], float) for r in rows)  # finite numbers (non-finite are logged as strings)
