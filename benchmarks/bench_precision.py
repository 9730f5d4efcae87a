"""bf16 (fp32 masters + bf16 autocast) against fp32: RL step time per stage on a 79M-parameter model on CPU.

    python benchmarks/bench_precision.py [--reps 2] [--steps 4] [--threads 2]

Runs alternate fp32, bf16, fp32, bf16, ... (interleaved, so a busy machine slows both alike) on a random
Llama of the shape benchmarks/vs_trl.py uses (hidden 640, 12 layers, 79M parameters) with the project's
tokenizer, the default job's task and algorithm at a smaller batch; the first step of each run is left out.
Prints one markdown table: mean seconds per stage and per step, with the spread over runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import build_model  # noqa: E402

SHAPE_79M = dict(hidden_size=640, layers=12, heads=10, kv_heads=10, intermediate_size=2560, vocab=0, positions=256)
STAGES = ["generate", "logprobs", "update", "step"]


def one_run(model_dir: Path, root: Path, dtype: str, a) -> dict:
    from rlreason import load_config, train

    name = f"{dtype}-{len(list(root.glob(dtype + '-*')))}"
    train(load_config("configs/default.yaml", [
        f"model.path={model_dir}", f"model.dtype={dtype}", "model.device=cpu", f"run.root={root}", f"run.name={name}",
        f"rollout.prompts_per_step={a.prompts}", f"rollout.group_size={a.group}", f"rollout.max_new_tokens={a.new_tokens}",
        f"train.steps={a.steps}", "data.eval_size=0", "log.progress=false", f"train.threads={a.threads}"]))
    rows = [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "perf/step_s" in r][1:]
    return {s: statistics.mean(r[f"perf/{s}_s"] for r in steps) for s in STAGES}


def run_args(doc: str) -> argparse.ArgumentParser:
    """The options every 79M-model step benchmark takes (repetitions, steps, threads, batch shape)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=32)
    return p


def main() -> int:
    p = run_args(__doc__)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    root = Path(tempfile.mkdtemp(prefix="bench_precision-"))
    model_dir = build_model(root / "model79m", SHAPE_79M)
    runs = {"float32": [], "bfloat16": []}
    for _ in range(a.reps):
        for dtype in runs:
            runs[dtype].append(one_run(model_dir, root / "runs", dtype, a))
    print(f"# {a.prompts} prompts x {a.group} completions, {a.new_tokens} new tokens, {a.steps} steps per run "
          f"(first left out), {a.reps} runs per dtype interleaved, {a.threads} threads")
    print("| dtype | " + " | ".join(f"{s} s" for s in STAGES) + " |")
    print("|---|" + "---|" * len(STAGES))
    for dtype, rs in runs.items():
        cells = [f"{statistics.mean(r[s] for r in rs):.2f} ({min(r[s] for r in rs):.2f}–{max(r[s] for r in rs):.2f})"
                 for s in STAGES]
        print(f"| {dtype} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
