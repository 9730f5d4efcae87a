"""What RL changed in the long-CoT model's answers: length, checks, corrected slips, truncation.

For each model folder given, greedy answers to the first `--n` held-out `longcot_arith` problems (the job's
384-token limit), and per answer: tokens, worked steps (`a op b: ...` lines), `check ... ok` lines, `wait,`
corrections, whether it was cut off, whether it is right. The rates tell which redundancy a model keeps.

    .venv/bin/python benchmarks/longcot_style.py models/tiny-longcot runs/sweeps/longcot_overlong/plain/seed0/final
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys

import torch

from rlreason.config import RewardTerm
from rlreason.policy import load_model
from rlreason.rewards.routing import Scorer
from rlreason.rollout.hf import HFEngine
from rlreason.tasks import TASKS


def style(text: str) -> dict:
    """Counts in one answer: worked steps, checks, corrected slips."""
    return {"steps": len(re.findall(r"^\d+[-+*]\d+: ", text, re.M)), "checks": len(re.findall(r"^check .* ok$", text, re.M)),
            "slips": text.count("wait,")}


def profile(path: str, n: int, max_new_tokens: int) -> dict:
    model, tok = load_model(path)
    samples = list(TASKS.get("longcot_arith")({}, seed=0).eval_samples(n))
    rollout = HFEngine(model, tok).generate(samples, 1, max_new_tokens=max_new_tokens, greedy=True)
    right = Scorer.for_all([RewardTerm(name="math_answer")]).correct(rollout)
    counts = [style(c.text) for c in rollout.completions]
    steps = sum(c["steps"] for c in counts) or 1
    return {"model": path, "accuracy": sum(map(bool, right)) / n,
            "tokens": statistics.mean(len(c.token_ids) for c in rollout.completions),
            "truncated": statistics.mean(c.truncated for c in rollout.completions),
            "checks_per_step": sum(c["checks"] for c in counts) / steps,
            "slips_per_answer": statistics.mean(c["slips"] for c in counts),
            "tokens_right": statistics.mean([len(c.token_ids) for c, ok in zip(rollout.completions, right) if ok] or [0])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--n", type=int, default=256, help="held-out problems")
    p.add_argument("--max-new-tokens", type=int, default=384)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print("| model | accuracy | mean tokens | tokens (right answers) | truncated | checks per step | slips per answer |")
    print("|---|---|---|---|---|---|---|")
    for path in a.models:
        r = profile(path, a.n, a.max_new_tokens)
        print(f"| {r['model']} | {r['accuracy']:.1%} | {r['tokens']:.1f} | {r['tokens_right']:.1f} | {r['truncated']:.1%} | "
              f"{r['checks_per_step']:.2f} | {r['slips_per_answer']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
