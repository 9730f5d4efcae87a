"""The policy update with and without token-budget packing, A/B in one process.

One real rollout of the default job (the shipped tiny reasoner, 32 prompts x 8, at most 64 new tokens),
then `update_policy` on it with several micro-batch plans, interleaved, `--reps` times each:

- `rows64`: 64 rows per micro-batch in rollout order (`train.micro_batch_tokens=0`, the default job before
  packing);
- `one`: the whole batch in one micro-batch padded to its longest sequence (what vs_trl.py's TRL side does);
- `budget<B>`: rows longest first, at most B padded tokens per micro-batch (`train.micro_batch_tokens=B`).

Every plan gives the same gradient (tests/test_trainer.py); only the padding and the matmul sizes differ.

    .venv/bin/python benchmarks/bench_update_packing.py                  # ~1 min
    .venv/bin/python benchmarks/bench_update_packing.py --prompts 16     # vs_trl.py's tiny batch
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch

from rlreason.config_load import load_config
from rlreason.batching import make_train_batch
from rlreason.build import build
from rlreason.update import micro_batches, update_policy


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--budgets", default="512,1024,2048")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    n = a.prompts * a.group
    cfg = load_config(None, ["model.device=cpu", f"run.root={tempfile.mkdtemp()}", f"rollout.prompts_per_step={a.prompts}",
                             f"rollout.group_size={a.group}", "algo.loss=ppo_clip"])
    c = build(cfg)
    rollout = c.engine.generate(c.sampler.next(a.prompts), a.group, 1.0, 1.0, 64)
    batch = make_train_batch(rollout, torch.randn(n), c.tokenizer.pad_token_id)
    lengths = batch.attention_mask.sum(-1)
    rows = torch.arange(n)
    plans = {"rows64": micro_batches(rows, 64), "one": [rows]}
    plans.update({f"budget{b}": micro_batches(rows, n, lengths, int(b)) for b in a.budgets.split(",")})
    print(f"# {n} sequences, longest {int(lengths.max())} tokens, mean {lengths.float().mean():.1f}; "
          f"{a.threads} thread(s)")
    times = {k: [] for k in plans}
    for _ in range(a.reps + 1):  # the first round warms up
        for name, plan in plans.items():
            t0 = time.perf_counter()
            update_policy(c.model, c.opt, batch, cfg, batch.old_logp, [plan])
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["rows64"][1:])
    print("| plan | micro-batches | padded tokens | median update s | vs rows64 |\n|---|---|---|---|---|")
    for name, plan in plans.items():
        padded = sum(len(m) * int(lengths[m].max()) for m in plan)
        med = statistics.median(times[name][1:])
        print(f"| {name} | {len(plan)} | {padded} | {med:.3f} | {base / med:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
