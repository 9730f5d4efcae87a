"""Reward throughput: math-verify checks/s through the worker pool, sandboxed code runs/s, and the
time to score a 512-completion math batch (compare: one default training step takes ~1 s).

Run from the repo root:  .venv/bin/python benchmarks/bench_rewards.py  (`... sandbox`: the sandbox part only)
"""
from __future__ import annotations

import os
import random
import sys
import time

from rlreason.rewards import math as rmath
from rlreason.rewards.code import code_tests
from rlreason.rewards.math import check_many, math_answer
from rlreason.tasks import TASKS
from rlreason.types import Completion, Rollout, Sample


def unique_pairs(n: int, seed: int, symbolic: bool = True):
    """n distinct (pred, gold) pairs, about 2/3 equivalent. symbolic: surds (a√2/b vs (a/b)√2), which
    need math-verify; else plain fractions vs decimals, which the in-process exact path decides."""
    rng, pairs = random.Random(seed), []
    for k in range(n):
        a, b = 1000 * k + rng.randint(1, 999), rng.choice([2, 4, 5, 8, 10, 20, 25])
        a_pred = a if rng.random() < 2 / 3 else a + 1
        if symbolic:
            pairs.append((f"\\frac{{{a_pred}\\sqrt{{2}}}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}\\sqrt{{2}}"))
        else:
            pairs.append((f"\\frac{{{a_pred}}}{{{b}}}", f"{a / b}"))
    return pairs


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()}")
    for workers in (1, 2):
        rmath.shutdown()
        rmath._CACHE.clear()
        start_s, _ = timed(lambda: check_many([("\\sqrt{4}", "2")], workers=workers))
        pairs = unique_pairs(1000, seed=workers)
        secs, verdicts = timed(lambda: check_many(pairs, workers=workers))
        print(f"math-verify, {workers} worker(s): pool start {start_s:.2f} s; 1000 distinct checks in {secs:.2f} s "
              f"= {1000 / secs:.0f} checks/s ({sum(bool(v) for v in verdicts)} equivalent, "
              f"{sum(v is None for v in verdicts)} timeouts)")

    secs, _ = timed(lambda: check_many(unique_pairs(1000, seed=3, symbolic=False)))
    print(f"1000 distinct fraction-vs-decimal checks (in-process exact path): {secs * 1000:.1f} ms")

    # A training batch: 512 completions (64 prompts x G=8).
    arith = TASKS.get("arithmetic")().eval_samples(64)
    texts = [f"<think>...</think>\\boxed{{{int(s.answer) + (i % 3 == 0)}}}" for s in arith for i in range(8)]
    roll = Rollout(arith, [Completion(t, [1], [0.0], "stop") for t in texts], 8)
    secs, _ = timed(lambda: math_answer(roll))
    print(f"512 arithmetic completions (integer answers, in-process fast path): {secs * 1000:.1f} ms")
    hostile = Rollout(arith, [Completion("\\boxed{" * 6000, [1], [0.0], "length")] * 512, 8)
    secs, _ = timed(lambda: math_answer(hostile))
    print(f"512 hostile completions (6000 unclosed \\boxed{{ each, 42 KB): {secs:.2f} s")
    rmath._CACHE.clear()
    pairs = unique_pairs(512, seed=7)
    samples = [Sample(id=f"q{i}", task="t", prompt="p", answer=g) for i, (_, g) in enumerate(pairs)]
    roll = Rollout(samples, [Completion(f"<think>..</think>\\boxed{{{p}}}", [1], [0.0], "stop") for p, _ in pairs], 1)
    secs, _ = timed(lambda: math_answer(roll))  # warm pool (2 workers), cold caches
    print(f"512 math completions, all distinct surd answers (worst case: 512 math-verify calls, 2 workers): {secs:.2f} s")
    rmath._CACHE.clear()
    groups = unique_pairs(64, seed=11)
    samples = [Sample(id=f"g{i}", task="t", prompt="p", answer=g) for i, (_, g) in enumerate(groups)]
    texts = []
    for i, (pred, gold) in enumerate(groups):  # 8 samples per prompt, 3 distinct answers among them
        variants = [pred, gold, f"\\frac{{{i}}}{{7}}\\sqrt{{3}}"]
        texts += [f"<think>..</think>\\boxed{{{variants[j % 3]}}}" for j in range(8)]
    roll = Rollout(samples, [Completion(t, [1], [0.0], "stop") for t in texts], 8)
    secs, _ = timed(lambda: math_answer(roll))
    print(f"512 math completions, 64 prompts x G=8 with 3 distinct surd answers per group (192 math-verify calls): {secs:.2f} s")

    bench_sandbox()
    rmath.shutdown()
    print(f"load average after: {os.getloadavg()}")


def bench_sandbox() -> None:
    """Sandboxed runs/s: the first 64 HumanEval canonical solutions, 1 then 2 sandboxes at a time."""
    task = TASKS.get("humaneval")()
    samples = task.eval_samples(64)
    roll = Rollout(samples, [Completion(task.demonstration(s), [1], [0.0], "stop") for s in samples], 1)
    for workers in (1, 2):
        secs, out = timed(lambda: code_tests(roll, workers=workers))
        print(f"sandboxed HumanEval canonical solutions, {workers} concurrent sandbox(es): 64 runs in {secs:.2f} s "
              f"= {64 / secs:.1f} runs/s (passed {sum(out.scores):.0f}/64)")


if __name__ == "__main__":
    if sys.argv[1:] == ["sandbox"]:  # only the sandbox part:  .venv/bin/python benchmarks/bench_rewards.py sandbox
        print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()}")
        bench_sandbox()
        print(f"load average after: {os.getloadavg()}")
    else:
        main()
