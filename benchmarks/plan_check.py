"""`rlreason plan` against measured memory: a 79M-parameter model trained 2 steps on CPU, peak RSS growth.

    python benchmarks/plan_check.py

For fp32 and bf16 (with and without gradient checkpointing) it runs `rlreason train` (2 steps, 8 prompts x 4
completions, 64 new tokens, micro_batch_tokens 2048) in a child process that records its resident memory
after the imports and its peak at the end (`ru_maxrss`), and prints the plan's peak next to the measured
growth (peak RSS - RSS after imports: the run's own memory, without Python's and torch's).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_precision import SHAPE_79M  # noqa: E402
from gpu_check import build_model  # noqa: E402

CHILD = """
import json, resource, sys
import torch, transformers, rlreason.build, rlreason.trainer
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from rlreason import load_config, train
train(load_config("configs/default.yaml", sys.argv[1:]))
print(json.dumps({"base_kib": base, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def main() -> int:
    from rlreason.config_load import load_config
    from rlreason.plan import estimate, model_shape

    root = Path(tempfile.mkdtemp(prefix="plan_check-"))
    model = build_model(root / "model79m", SHAPE_79M)
    common = [f"model.path={model}", "model.device=cpu", "rollout.prompts_per_step=8", "rollout.group_size=4",
              "rollout.max_new_tokens=64", "train.steps=2", "data.eval_size=0", "log.progress=false",
              "train.micro_batch_tokens=2048", "train.threads=2"]
    print("| dtype | checkpointing | plan peak MiB | measured growth MiB | measured / plan |\n|---|---|---|---|---|")
    for dtype in ("float32", "bfloat16"):
        for ckpt in ("false", "true"):
            args = common + [f"model.dtype={dtype}", f"model.gradient_checkpointing={ckpt}", f"run.root={root}",
                             f"run.name={dtype}-{ckpt}"]
            plan = estimate(load_config("configs/default.yaml", args), model_shape(str(model)))[-1][1] / 2**20
            done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
            m = json.loads(done.stdout.strip().splitlines()[-1])
            grown = (m["peak_kib"] - m["base_kib"]) / 1024
            print(f"| {dtype} | {ckpt} | {plan:.0f} | {grown:.0f} | {grown / plan:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
