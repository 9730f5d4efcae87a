"""Rollout tokens/s of the `hf` and `vllm` engines, generation forced to full length.

Models: the shipped tiny reasoner (1.06M parameters) and a randomly initialised
Llama of the same family and tokenizer, built here with rlreason.tinymodel
(hidden 640, 12 layers, 10 heads, MLP 2560: 79M parameters; no download).
Each engine runs the trainer's call, `generate(samples, n=G, ...)`, on the
same prompts, with EOS suppressed so every completion is `max_new_tokens`
long (`engine.min_tokens`: HF engine masks EOS; vLLM: SamplingParams.min_tokens).
The first call is a warm-up; the median of the timed calls is reported, and
the median of three `sync_weights(model)` calls (what the trainer's stage 7 costs).

    .venv/bin/python benchmarks/rollout_speed.py            # both models, both engines
    .venv/bin/python benchmarks/rollout_speed.py --models tiny --reps 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

from rlreason.config import RolloutConfig
from rlreason.policy import REPO_ROOT, load_model
from rlreason.rollout import ENGINES
from rlreason.tasks import TASKS


def big_model_dir(out: str) -> str:
    """Save a random 79M-parameter Llama with the tiny reasoner's tokenizer and architecture to `out`."""
    from transformers import AutoTokenizer

    from rlreason.tinymodel import build_model

    tok = AutoTokenizer.from_pretrained(REPO_ROOT / "models" / "tiny-reasoner")
    model = build_model(tok, hidden_size=640, layers=12, heads=10, intermediate_size=2560, max_positions=256, seed=0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def bench(engine_name: str, path: str, prompts: int, group: int, new_tokens: int, reps: int) -> dict:
    model, tok = load_model(path, "float32", "cpu")
    cfg = RolloutConfig(engine=engine_name, batch_size=prompts * group)
    engine = ENGINES.get(engine_name)(model, tok, cfg)
    engine.min_tokens = new_tokens  # both engines: no EOS before the limit
    samples = TASKS.get("arithmetic")({}, seed=0).eval_samples(prompts)
    times = []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        r = engine.generate(samples, group, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens)
        dt = time.perf_counter() - t0
        assert all(len(c.token_ids) == new_tokens for c in r.completions), "generation was not full length"
        if i:  # the first call warms up
            times.append(dt)
    syncs = []
    for _ in range(3):  # vLLM: streamed in-place weight sync (HF: nothing to copy)
        t0 = time.perf_counter()
        engine.sync_weights(model)
        syncs.append(time.perf_counter() - t0)
    engine.close()
    tokens = prompts * group * new_tokens
    params = sum(p.numel() for p in model.parameters())
    return {"engine": engine_name, "params": params, "tokens": tokens, "median_s": statistics.median(times),
            "tok_s": tokens / statistics.median(times), "sync_s": statistics.median(syncs)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,big", help="comma list of tiny,big")
    p.add_argument("--engines", default="hf,vllm")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: this 2-core machine is shared)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)  # before vLLM starts: its CPU worker pins the thread count afterwards
    print(f"# {a.prompts} prompts x G={a.group}, {a.new_tokens} new tokens each, fp32 CPU, {a.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    print("| model | params | engine | tokens/call | median s | tokens/s | sync_weights s |\n|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            path = str(REPO_ROOT / "models" / "tiny-reasoner") if name == "tiny" else big_model_dir(tmp)
            for eng in a.engines.split(","):
                r = bench(eng, path, a.prompts, a.group, a.new_tokens, a.reps)
                print(f"| {name} | {r['params'] / 1e6:.2f}M | {eng} | {r['tokens']} | {r['median_s']:.2f} | "
                      f"{r['tok_s']:.0f} | {r['sync_s']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
