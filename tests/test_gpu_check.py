"""benchmarks/gpu_check.sh --cpu-dry-run: the GPU check runs end to end on CPU (tiny sizes, 2 steps)."""
from __future__ import annotations

import json
import subprocess

import pytest

from rlreason.policy import REPO_ROOT


@pytest.mark.slow
def test_gpu_check_dry_run_writes_its_report(tmp_path):
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu-dry-run", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["cpu_dry_run"] is True and report["gpu_tests"]["exit_status"] == 0
    train = report["train"]
    assert train["steps"] == 2 and train["loss_finite"] and train["generated_tokens_per_s"] > 0
    assert set(train["stage_s"]) >= {"generate", "reward", "logprobs", "update", "sync"}
    assert 0 <= train["engine_logprob_abs_diff_mean"] < 0.05  # bf16 engine vs trainer: close, not equal
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check (CPU dry run)")
