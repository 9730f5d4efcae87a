"""LoRA against full fine-tuning: peak memory and RL step time on a 79M-parameter model on CPU.

    python benchmarks/bench_lora.py [--reps 2] [--steps 4] [--threads 2] [--ranks 8,64]

Runs alternate full, LoRA r=8, LoRA r=64, full, ... (interleaved, so a busy machine slows all alike), each in
its own process, on a random Llama of the shape benchmarks/vs_trl.py uses (hidden 640, 12 layers, 79M
parameters, fp32) with the project's tokenizer and the default job's task and algorithm at a smaller batch;
the first step of each run is left out of the times. Per run: trainable parameters, the bytes of the
trained tensors' gradients and AdamW state after training, the process's resident memory once the run is
built (weights, runtime) and its peak while training (the kernel's high-water mark, reset after the build
so the loading transient is not counted: weights + gradients + AdamW state + activations + KV cache +
runtime), and seconds per stage. Prints one markdown table (mean over runs, min-max in brackets); Linux only.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_precision import SHAPE_79M, run_args  # noqa: E402
from gpu_check import build_model  # noqa: E402

STAGES = ["generate", "update", "sync", "step"]


def one_run(model_dir: str, root: str, name: str, rank: int, a) -> dict:
    """Train `a.steps` steps in this process; the measurements of this run."""
    from rlreason.build import build
    from rlreason.config_load import load_config
    from rlreason.trainer import train

    cfg = load_config("configs/default.yaml", [
        f"model.path={model_dir}", "model.device=cpu", f"model.lora.r={rank}", f"run.root={root}",
        f"run.name={name}", f"rollout.prompts_per_step={a.prompts}", f"rollout.group_size={a.group}",
        f"rollout.max_new_tokens={a.new_tokens}", f"train.steps={a.steps}", "data.eval_size=0",
        "log.progress=false", f"train.threads={a.threads}"])
    parts = build(cfg)
    built = rss_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    train(cfg, parts)
    trained = [p for p in parts.model.parameters() if p.requires_grad]
    opt_bytes = sum(t.numel() * t.element_size() for st in parts.opt.state.values() for t in st.values()
                    if torch.is_tensor(t) and t.dim() > 0)
    rows = [json.loads(x) for x in (Path(root) / name / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "perf/step_s" in r][1:]
    return {"trainable": sum(p.numel() for p in trained), "total": sum(p.numel() for p in parts.model.parameters()),
            "grad_opt_mib": (sum(p.numel() * p.element_size() for p in trained) + opt_bytes) / 2**20,
            "built_rss_mib": built, "peak_rss_mib": rss_mib("VmHWM"),
            **{s: statistics.mean(r.get(f"perf/{s}_s", 0.0) for r in steps) for s in STAGES}}


def rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, MiB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def spread(rs, key: str, fmt: str) -> str:
    vals = [r[key] for r in rs]
    return f"{statistics.mean(vals):{fmt}} ({min(vals):{fmt}}–{max(vals):{fmt}})" if len(vals) > 1 else \
        f"{vals[0]:{fmt}}"


def main() -> int:
    p = run_args(__doc__)
    p.add_argument("--ranks", default="8,64", help="LoRA ranks to compare with full fine-tuning (r = 0)")
    p.add_argument("--one", nargs=4, metavar=("MODEL", "ROOT", "NAME", "RANK"), help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.one:  # a child process: one run, its measurements as one JSON line
        print("RESULT " + json.dumps(one_run(*a.one[:3], int(a.one[3]), a)))
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench_lora-"))
    model_dir = build_model(root / "model79m", SHAPE_79M)
    ranks = [0] + [int(r) for r in a.ranks.split(",")]
    runs = {r: [] for r in ranks}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k not in ("one", "ranks")]
    for i in range(a.reps):
        for r in ranks:
            out = subprocess.run([sys.executable, __file__, *flags, "--one", str(model_dir), str(root / "runs"),
                                  f"r{r}-{i}", str(r)], capture_output=True, text=True, check=True).stdout
            runs[r].append(json.loads(out.split("RESULT ", 1)[1]))
    print(f"# {a.prompts} prompts x {a.group} completions, {a.new_tokens} new tokens, {a.steps} steps per run "
          f"(first left out), {a.reps} runs per setting interleaved, {a.threads} threads, fp32")
    print("| setting | trainable params | grads + AdamW state MiB | RSS after build MiB | peak RSS training MiB | "
          + " | ".join(f"{s} s" for s in STAGES) + " |")
    print("|---|---|---|---|---|" + "---|" * len(STAGES))
    for r, rs in runs.items():
        name = "full fine-tune" if r == 0 else f"LoRA r={r}"
        share = rs[0]["trainable"] / rs[0]["total"]
        cells = [f"{rs[0]['trainable'] / 1e6:.2f}M ({share:.1%})", spread(rs, "grad_opt_mib", ".0f"),
                 spread(rs, "built_rss_mib", ".0f"), spread(rs, "peak_rss_mib", ".0f")] + [spread(rs, s, ".2f") for s in STAGES]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
