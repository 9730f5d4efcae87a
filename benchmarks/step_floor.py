"""Our step-time profile next to a FLOP floor, per stage, on this machine.

For each model (the shipped tiny reasoner; a random 79M Llama with generation
forced to the full length), at the vs_trl.py settings (beta = 0, one update
per rollout, fp32, one torch thread), this runs `--steps` steps of our
trainer (stages 1-7, as vs_trl.py's `Ours`) and reports the median seconds of
each stage next to its floor:

    floor = the stage's matmul FLOPs / this machine's measured matmul rate at the same shapes

- generate: 2 x (linear-layer weights) per prompt token (prefill) and per
  generated token (decode), plus attention (4 x layers x attention width x
  context per token); the rate is measured with as many rows as the step
  generates at once (decode shape).
- update: 3 x the forward FLOPs (forward, and a backward of twice its cost) over
  the real prompt+completion tokens (no padding counted), at the rate of
  micro-batch-sized matmuls.
- reward, batch prep, sync: no matmul work (floor 0).

The rate is measured by timing `x @ W.T` for every nn.Linear of the model with
`x` of M rows; it is a floor for dense fp32 matmuls on this CPU, not a peak
from a datasheet.

    .venv/bin/python benchmarks/step_floor.py                 # both models, ~6 min
    .venv/bin/python benchmarks/step_floor.py --models tiny --steps 6
    .venv/bin/python benchmarks/step_floor.py --models longcot      # the long-CoT model at 512 new tokens
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vs_trl import TASK_OF, Ours, model_path  # noqa: E402


def linear_shapes(model) -> List[torch.Size]:
    return [m.weight.shape for m in model.modules() if isinstance(m, torch.nn.Linear)]


def matmul_rate(model, rows: int, reps: int = 5) -> float:
    """FLOP/s of `x[rows] @ W.T` over all of the model's linear layers (median of `reps` passes)."""
    weights = [torch.randn(s) for s in linear_shapes(model)]
    xs = [torch.randn(rows, w.shape[1]) for w in weights]
    flops = sum(2 * rows * w.shape[0] * w.shape[1] for w in weights)
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        for x, w in zip(xs, weights):
            x @ w.T
        times.append(time.perf_counter() - t0)
    return flops / statistics.median(times[1:])


def per_token_flops(model) -> Dict[str, float]:
    """Forward FLOPs of one token: linear layers (2 x weights) and attention per context position."""
    cfg = model.config
    heads_dim = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    lm_head = 2 * model.lm_head.weight.numel()
    return {"linear": 2 * sum(s[0] * s[1] for s in linear_shapes(model)) - lm_head, "lm_head": lm_head,
            "attn_per_ctx": 4 * cfg.num_hidden_layers * heads_dim}


def profile(name: str, path: str, a, tmp: str) -> dict:
    ours = Ours(path, a, tmp, extra=[f"train.micro_batch_tokens={a.budget}"])
    for _ in range(a.steps):
        ours.step()
    w = a.warmup
    med = {k: statistics.median(p.get(k, 0.0) for p in ours.perf[w:]) for k in ("generate", "reward", "logprobs", "update", "sync")}
    tok = {k: statistics.mean(t[k] for t in ours.tokens[w:]) for k in ours.tokens[0]}
    f = per_token_flops(ours.c.model)
    n_rows = a.prompts * a.group
    prompt_len = tok["prompt"] / n_rows
    gen_len = tok["generated"] / n_rows
    # generation: prefill (no lm_head but the last position) + decode; attention context grows along the sequence
    gen_flops = (tok["prompt"] * f["linear"] + n_rows * f["lm_head"] + tok["generated"] * (f["linear"] + f["lm_head"])
                 + f["attn_per_ctx"] * n_rows * (prompt_len ** 2 / 2 + gen_len * (prompt_len + gen_len / 2)))
    seq = tok["update"] / n_rows
    upd_flops = 3 * (tok["update"] * (f["linear"] + f["lm_head"]) + f["attn_per_ctx"] * n_rows * seq ** 2 / 2)
    update_rows = min(a.budget, int(tok["update"]))
    return {"model": name, "params": sum(p.numel() for p in ours.c.model.parameters()), "median": med, "tokens": tok,
            "gen_flops": gen_flops, "upd_flops": upd_flops, "decode_rows": n_rows, "update_rows": update_rows,
            "decode_rate": matmul_rate(ours.c.model, n_rows), "update_rate": matmul_rate(ours.c.model, update_rows),
            "step": statistics.median(ours.times[w:])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,big")
    p.add_argument("--steps", type=int, default=8, help="steps per model, warm-up included")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=1.5e-4)
    p.add_argument("--budget", type=int, default=1024, help="train.micro_batch_tokens")
    p.add_argument("--tiny", default="16,8,64", help="prompts,group,new_tokens (EOS allowed)")
    p.add_argument("--big", default="4,4,64", help="prompts,group,new_tokens (full length forced)")
    p.add_argument("--longcot", default="8,8,512", help="prompts,group,new_tokens for models/tiny-longcot (EOS allowed)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# torch {torch.__version__}, {a.threads} thread(s), load average at start {os.getloadavg()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            a.prompts, a.group, a.new_tokens = (int(x) for x in getattr(a, name).split(","))
            a.task, a.full_length = TASK_OF[name], name == "big"
            path = model_path(name, tmp)
            results.append(profile(name, path, a, os.path.join(tmp, name)))
    print(f"# load average at end {os.getloadavg()}\n")
    print("| model | stage | measured s (median) | GFLOP | matmul rate GFLOP/s (rows) | floor s | measured / floor |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        m = r["median"]
        rows = [("generate", m["generate"], r["gen_flops"], r["decode_rate"], f"{r['decode_rows']} rows"),
                ("update", m["update"], r["upd_flops"], r["update_rate"], f"{r['update_rows']} rows")]
        for stage, secs, fl, rate, nrows in rows:
            floor = fl / rate
            print(f"| {r['model']} | {stage} | {secs:.3f} | {fl / 1e9:.1f} | {rate / 1e9:.1f} ({nrows}) | {floor:.3f} | "
                  f"{secs / floor:.1f}x |")
        for stage, key in (("reward", "reward"), ("batch prep", "logprobs"), ("sync", "sync")):
            print(f"| {r['model']} | {stage} | {m[key]:.3f} | 0 | - | 0 | - |")
        total_floor = r["gen_flops"] / r["decode_rate"] + r["upd_flops"] / r["update_rate"]
        print(f"| {r['model']} | **step** | {r['step']:.3f} | {(r['gen_flops'] + r['upd_flops']) / 1e9:.1f} | | "
              f"{total_floor:.3f} | {r['step'] / total_floor:.1f}x |")
    for r in results:
        t = r["tokens"]
        print(f"# {r['model']}: {r['params'] / 1e6:.2f}M params; per step {t['prompt']:.0f} prompt + {t['generated']:.0f} "
              f"generated tokens; update {t['update']:.0f} real tokens, {t['padded']:.0f} padded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
