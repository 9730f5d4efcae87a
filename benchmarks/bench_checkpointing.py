"""Gradient checkpointing in the RL update: peak memory and step time on a 79M-parameter model on CPU.

    python benchmarks/bench_checkpointing.py [--reps 1] [--steps 2] [--threads 2] [--new-tokens 200]

Runs alternate model.gradient_checkpointing=false / true (interleaved), each in its own process, on the random
79M Llama of benchmarks/bench_precision.py (hidden 640, 12 layers, fp32) with the default job's task and
algorithm, 4 prompts x 8 completions of `--new-tokens` tokens (a random model rarely stops early), all rows in
one micro-batch. Per run: the process's peak resident memory while training (VmHWM, reset after the build so
loading is not counted) and the update's seconds per step (the first step left out when there are more).
Prints one markdown table; Linux only.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lora import rss_mib  # noqa: E402
from bench_precision import SHAPE_79M  # noqa: E402
from gpu_check import build_model  # noqa: E402


def one_run(model_dir: str, root: str, name: str, ckpt: bool, a) -> dict:
    from rlreason.build import build
    from rlreason.config_load import load_config
    from rlreason.trainer import train

    cfg = load_config("configs/default.yaml", [
        f"model.path={model_dir}", "model.device=cpu", f"model.gradient_checkpointing={str(ckpt).lower()}",
        f"run.root={root}", f"run.name={name}", "rollout.prompts_per_step=4", "rollout.group_size=8",
        f"rollout.max_new_tokens={a.new_tokens}", f"train.steps={a.steps}", "data.eval_size=0", "eval.every=0",
        "log.progress=false", f"train.threads={a.threads}", "train.micro_batch_size=64"])
    parts = build(cfg)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS: loading is not counted
    train(cfg, parts)
    rows = [json.loads(x) for x in (Path(root) / name / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "perf/update_s" in r]
    steps = steps[1:] or steps
    return {"peak_rss_mib": rss_mib("VmHWM"), "update_s": statistics.mean(r["perf/update_s"] for r in steps),
            "tokens": statistics.mean(r["rollout/generated_tokens"] for r in steps)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=200)
    p.add_argument("--one", nargs=4, metavar=("MODEL", "ROOT", "NAME", "CKPT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(one_run(a.one[0], a.one[1], a.one[2], a.one[3] == "1", a)))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench_ckpt_"))
    model = build_model(tmp / "model79m", SHAPE_79M)
    results = {False: [], True: []}
    for rep in range(a.reps):
        for ckpt in (False, True):
            cmd = [sys.executable, __file__, "--steps", str(a.steps), "--threads", str(a.threads), "--new-tokens",
                   str(a.new_tokens), "--one", str(model), str(tmp / "runs"), f"c{int(ckpt)}_{rep}", str(int(ckpt))]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            results[ckpt].append(json.loads(out))
    print("| model.gradient_checkpointing | peak RSS while training (MiB) | update s/step | generated tokens/step |")
    print("|---|---|---|---|")
    for ckpt, rs in results.items():
        cells = [f"{statistics.mean(r[k] for r in rs):.{d}f}" for k, d in (("peak_rss_mib", 0), ("update_s", 2),
                                                                         ("tokens", 0))]
        print(f"| {str(ckpt).lower()} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
