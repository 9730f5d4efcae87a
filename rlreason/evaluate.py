"""Held-out evaluation: greedy accuracy, avg@k and unbiased pass@k, mean response length, truncation rate.

Greedy decoding gives `eval/accuracy`. With `eval.samples = n > 0`, n more completions per problem are
sampled (at `eval.temperature`, `eval.top_p`) and, for each k in `eval.pass_k`:

- `eval/pass@k`: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained
  on Code", arXiv 2107.03374, §2.1): with c of the n samples correct, the chance that at least one of k
  samples drawn without replacement is correct is 1 - C(n-c, k) / C(n, k), averaged over problems.
- `eval/avg@k`: the fraction correct among the first k of the n samples, averaged over problems
  (avg@n is the mean sampled accuracy; each avg@k has the same expectation, pass@1).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from rlreason.types import Rollout, Sample


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem (Chen et al. 2021, arXiv 2107.03374): 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge binomials.
    Example: n=4 samples, c=1 correct, k=2 -> 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:  # every draw of k samples contains a correct one
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def avg_at_k(correct: Sequence[bool], k: int) -> float:
    """Fraction correct among the first k samples of one problem. Example: [1, 0, 1, 1], k=2 -> 0.5."""
    if not 1 <= k <= len(correct):
        raise ValueError(f"avg@k needs 1 <= k <= n (got k={k}, n={len(correct)})")
    return sum(bool(x) for x in correct[:k]) / k


def sampled_metrics(correct: List[List[bool]], ks: Sequence[int]) -> Dict[str, float]:
    """`eval/avg@k` and `eval/pass@k` averaged over problems; `correct[p]` holds problem p's n sample verdicts."""
    out: Dict[str, float] = {}
    for k in ks:
        out[f"eval/avg@{k}"] = sum(avg_at_k(c, k) for c in correct) / len(correct)
        out[f"eval/pass@{k}"] = sum(pass_at_k(len(c), sum(map(bool, c)), k) for c in correct) / len(correct)
    return out


Judge = Callable[[Rollout], List[bool]]
"""[N] whether each completion is correct (the run's `Scorer.correct`: each task's correctness term > 0)."""


def _sample_rollout(engine, samples, n: int, temperature: float, top_p: float, max_new_tokens: int, seed: int):
    """n sampled completions per problem from a seeded RNG; the caller's torch RNG state is restored after."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return engine.generate(samples, n, temperature, top_p, max_new_tokens)


def eval_records(engine, samples: List[Sample], judge: Judge, max_new_tokens: int, cfg: Optional[Any] = None,
                 seed_offset: int = 0) -> List[Dict[str, Any]]:
    """One record per problem: greedy `correct`, `length` (tokens), `truncated`, `task`, and with
    `cfg.samples = n > 0` the n sampled verdicts `sampled` (seeded by cfg.seed + seed_offset).

    Records of disjoint parts of an eval set (one per rank under torchrun) concatenate into the records of
    the whole set, in any order: `eval_metrics` of them equals `evaluate` on the whole set.
    """
    if not samples:
        return []
    rollout = engine.generate(samples, n=1, max_new_tokens=max_new_tokens, greedy=True)
    records = [{"correct": bool(ok), "length": len(c.token_ids), "truncated": bool(c.truncated), "task": s.task,
                **({"tool_calls": len(c.tool_calls)} if c.tool_mask else {})}  # with rollout.tools
               for s, c, ok in zip(samples, rollout.completions, judge(rollout))]
    n = int(getattr(cfg, "samples", 0) or 0)
    if n > 0:
        sampled = _sample_rollout(engine, samples, n, cfg.temperature, cfg.top_p, max_new_tokens,
                                  cfg.seed + seed_offset)
        verdicts = [bool(ok) for ok in judge(sampled)]  # [P * n], problem p owns p*n .. p*n+n-1
        for p, rec in enumerate(records):
            rec["sampled"] = verdicts[p * n:(p + 1) * n]
    return records


def eval_metrics(records: List[Dict[str, Any]], pass_k: Sequence[int] = ()) -> Dict[str, float]:
    """The `eval/*` metrics of per-problem records (`eval_records`); {} for none.

    `eval/accuracy/<task>` when the records span several tasks (a mixture); `eval/tool_calls` with tools; avg@k and pass@k for k in
    `pass_k` (empty: k in {1, n}) when the records carry n sampled verdicts each.
    """
    if not records:
        return {}
    P = len(records)
    out = {
        "eval/accuracy": sum(r["correct"] for r in records) / P,
        "eval/response_length": sum(r["length"] for r in records) / P,
        "eval/truncated": sum(r["truncated"] for r in records) / P,
        "eval/size": P,
    }
    by_task: Dict[str, List[bool]] = {}
    for r in records:
        by_task.setdefault(r["task"], []).append(r["correct"])
    if len(by_task) > 1:
        out.update({f"eval/accuracy/{t}": sum(v) / len(v) for t, v in by_task.items()})
    if "tool_calls" in records[0]:  # the engine ran tools (rollout.tools): calls per greedy completion
        out["eval/tool_calls"] = sum(r["tool_calls"] for r in records) / P
    if "sampled" in records[0]:
        n = len(records[0]["sampled"])
        out.update(sampled_metrics([r["sampled"] for r in records], sorted(set(pass_k)) or sorted({1, n})))
        out["eval/samples"] = n
    return out


def evaluate(engine, samples: List[Sample], judge: Judge, max_new_tokens: int,
             cfg: Optional[Any] = None) -> Dict[str, float]:
    """Greedy decode each sample once; accuracy = fraction `judge` calls correct.

    `judge` is the run's `Scorer.correct` (each sample judged by its task's correctness term; with several
    tasks `eval/accuracy/<task>` is logged too). `cfg` (an EvalConfig, or anything with
    samples, temperature, top_p, pass_k, seed) adds avg@k and pass@k from `cfg.samples` sampled
    completions per problem; `pass_k` empty means k in {1, n}.
    """
    return eval_metrics(eval_records(engine, samples, judge, max_new_tokens, cfg), getattr(cfg, "pass_k", ()) or ())
