"""Throughput of synchronous vs partial vs asynchronous rollouts on the long-CoT lab, interleaved (CPU).

Every mode is a full run's `Parts` built from `configs/longcot.yaml` plus the mode's overrides; the steps
alternate mode by mode (sync, partial@B1, partial@B2, ..., async), each one the trainer's own `train_step`
(stages 1-8: generation, rewards, update, sync; no eval, no checkpoint), so machine-load drift hits every
mode alike. The asynchronous mode's background generation is awaited at the end of its own step (and
counted in it), so it never runs inside another mode's step.

Per mode, over the measured steps (the first `--warmup` dropped): trained tokens per second (the loss
tokens of the step's batch over its wall time), the median step time, the stage profile (generate, reward,
logprobs, update, sync seconds per step) and the long-tail share of generation: the share of each decoding
loop's wall time (one batch of a generate call or of a partial round) after 90% of its sequences had
finished, summed over a step's loops and divided by their total time (`vs_trl.GenClock`'s definition);
and the sequential decode steps per step (1 + the longest row's new tokens, per generate or round call: what one batch of every row needs,
as vLLM's continuous batching runs it) with the trained tokens per decode step: on a GPU, where a decode
step of a small model costs about the same for 8 rows as for 128, generation time follows these steps, not
the tokens, so their ratio to the synchronous loop's estimates the GPU gain of generation. Prefilled tokens
are counted where the engine really prefills (`HFEngine._prefill`: prompts, and carried samples at the
first round of a step).

    .venv/bin/python benchmarks/async_bench.py                      # 8 x 8 at up to 384 tokens, 6 steps
    .venv/bin/python benchmarks/async_bench.py --steps 8 --budgets 128,64,64x2 --staleness 1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vs_trl import tail_share  # noqa: E402

from rlreason.build import build  # noqa: E402
from rlreason.config_load import load_config  # noqa: E402
from rlreason.policy import REPO_ROOT  # noqa: E402
from rlreason.rollout.hf import HFEngine  # noqa: E402
from rlreason.trainer import train_step  # noqa: E402

CALLS: List[Dict] = []  # every generate / extend call: {"mode", "step", "forwards", "prefilled", "sampled"}
LOOPS: List[Dict] = []  # every decoding loop (one batch): {"mode", "step", "total", "tail"} seconds
MODE = {"now": "", "step": 0}
PREFILLED: Dict[int, int] = {}  # thread -> tokens prefilled in its current generate / extend call


def counted(prefill):
    """HFEngine._prefill counting the tokens it prefills (the mask's real positions) into the current call."""
    def wrapper(self, ids, mask, pos, cache):
        PREFILLED[threading.get_ident()] = PREFILLED.get(threading.get_ident(), 0) + int(mask.sum())
        return prefill(self, ids, mask, pos, cache)
    return wrapper


def rounds(method, lengths_of):
    """HFEngine.generate / extend: per call, the sequential decode steps (1 + its longest row's new tokens),
    the tokens it sampled and the tokens it prefilled."""
    def wrapper(self, *args, **kw):
        PREFILLED[threading.get_ident()] = 0
        out = method(self, *args, **kw)
        lengths = lengths_of(out)
        CALLS.append({"mode": MODE["now"], "step": MODE["step"], "forwards": 1 + max(lengths, default=0),
                      "prefilled": PREFILLED[threading.get_ident()], "sampled": sum(lengths)})
        return out
    return wrapper


def clocked(loop):
    """HFEngine._loop (one batch's decoding) timed, with its long tail (forward pre-hooks on the engine's model)."""
    def wrapper(self, *args, **kw):
        stamps = [time.perf_counter()]
        hook = self.model.register_forward_pre_hook(lambda *_: stamps.append(time.perf_counter()))
        try:
            out = loop(self, *args, **kw)
        finally:
            hook.remove()
        end = time.perf_counter()
        # in the loop, forward j feeds token j: a row of L tokens is done once forward L-1 starts
        lengths = [max(0, L - 1) for L in out[2].tolist()]
        LOOPS.append({"mode": MODE["now"], "step": MODE["step"], "total": end - stamps[0],
                      "tail": tail_share(stamps, end, lengths) * (end - stamps[0])})
        return out
    return wrapper


class Recorder:
    """A metrics logger that keeps each step's record."""

    def __init__(self):
        self.records: List[Dict[str, float]] = []

    def step(self, step, metrics):
        self.records.append(dict(metrics))

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def modes(a) -> Dict[str, List[str]]:
    out = {"sync": []}
    for spec in a.budgets:  # B or BxK: budget B, K x prompts_per_step groups in flight
        b, _, k = spec.partition("x")
        out[f"partial@{spec}"] = [f"rollout.partial_tokens={b}", f"rollout.partial_max_steps={a.max_steps}",
                                  f"rollout.partial_groups={int(k or 1) * a.prompts}"]
    for s in a.staleness:
        out[f"async s={s}"] = [f"rollout.max_staleness={s}"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=384)
    ap.add_argument("--budgets", type=lambda s: [x for x in s.split(",") if x], default=["128", "64", "64x2"],
                    help="partial modes: B (budget B, prompts_per_step groups in flight) or BxK (K times as many)")
    ap.add_argument("--staleness", type=lambda s: [int(x) for x in s.split(",") if x], default=[1])
    ap.add_argument("--max-steps", type=int, default=4)
    a = ap.parse_args()
    HFEngine.generate = rounds(HFEngine.generate, lambda r: [len(c.token_ids) for c in r.completions])
    HFEngine.extend = rounds(HFEngine.extend, lambda pieces: [len(p[0]) for p in pieces])
    HFEngine._prefill = counted(HFEngine._prefill)
    HFEngine._loop = clocked(HFEngine._loop)
    tmp = tempfile.mkdtemp()
    runs = {}
    for name, extra in modes(a).items():
        cfg = load_config(str(REPO_ROOT / "configs" / "longcot.yaml"), [
            f"run.root={tmp}", f"run.name={name.replace(' ', '_').replace('@', '_')}", "train.threads=1",
            f"rollout.prompts_per_step={a.prompts}", f"rollout.group_size={a.group}", "data.eval_size=0",
            f"rollout.max_new_tokens={a.new_tokens}", f"train.steps={a.steps + 10}",  # async: generates ahead to the end
            "log.progress=false", *extra])
        runs[name] = (cfg, build(cfg), Recorder())
    torch.set_num_threads(1)
    walls: Dict[str, List[float]] = {n: [] for n in runs}
    for step in range(1, a.steps + 1):
        for name, (cfg, p, rec) in runs.items():
            MODE["now"], MODE["step"] = name, step
            t0 = time.perf_counter()
            with p.compute():
                train_step(cfg, p, rec)
                p.rollouts.state_dict()  # async: wait for the background generation before the next mode's step
            walls[name].append(time.perf_counter() - t0)
    report(a, runs, walls)


def report(a, runs, walls) -> None:
    print(f"| mode | trained tokens/s | x sync | median step s | generate / reward / logprobs / update / sync s "
          f"| long-tail share of generation | sequential decode steps per step (trained tokens per decode step) "
          f"| prefilled / sampled tokens per step | staleness mean / max | truncated |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = None
    for name, (cfg, p, rec) in runs.items():
        recs, wall = rec.records[a.warmup:], walls[name][a.warmup:]
        tps = sum(r["rollout/loss_tokens"] for r in recs) / sum(wall)
        base = base or tps
        calls = [c for c in CALLS if c["mode"] == name and c["step"] > a.warmup]
        loops = [c for c in LOOPS if c["mode"] == name and c["step"] > a.warmup]
        tail = sum(c["tail"] for c in loops) / max(1e-9, sum(c["total"] for c in loops))
        stages = " / ".join(f"{statistics.mean(r.get(f'perf/{s}_s', 0.0) for r in recs):.2f}"
                            for s in ("generate", "reward", "logprobs", "update", "sync"))
        stale = (f"{statistics.mean(r.get('rollout/staleness_mean', 0.0) for r in recs):.2f} / "
                 f"{max(r.get('rollout/staleness_max', 0.0) for r in recs):.0f}")
        trunc = statistics.mean(r["rollout/truncated"] for r in recs)
        forwards = sum(c["forwards"] for c in calls) / len(recs)
        per_forward = sum(r["rollout/loss_tokens"] for r in recs) / len(recs) / max(1.0, forwards)
        tokens = " / ".join(f"{sum(c[k] for c in calls) / len(recs):.0f}" for k in ("prefilled", "sampled"))
        print(f"| {name} | {tps:.0f} | {tps / base:.2f}x | {statistics.median(wall):.2f} | {stages} | {tail:.0%} | "
              f"{forwards:.0f} ({per_forward:.1f}) | {tokens} | {stale} | {trunc:.1%} |")


if __name__ == "__main__":
    main()
