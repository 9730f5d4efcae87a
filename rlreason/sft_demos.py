"""Where `rlreason sft` gets its demonstrations (`demos:`): a registry of sources, each returning
(prompt_ids, completion_ids) pairs and a dict of numbers about them (written into sft_info.json).

- `task`: the task's own worked demonstrations (`examples` of them, from the training split).
- `shortest_of_k`: shortest rejection sampling (Kimi k1.5, arXiv 2501.12599 §2.4): the model being fine-tuned
  (`init`) samples `sample_k` completions for each of `sample_prompts` training prompts; the shortest correct
  one of each prompt is its demonstration, and prompts with no correct completion are dropped.
"""
from __future__ import annotations

import itertools
import math
import time
from typing import Dict, List, Optional, Sequence, Tuple

from rlreason.errors import DataError
from rlreason.registry import Registry
from rlreason.tasks.templates import prompt_ids
from rlreason.types import Rollout

Pairs = List[Tuple[List[int], List[int]]]
DEMOS: Registry = Registry("demonstration source (demos)")


def make_examples(task, tokenizer, n: int, mask_tool_output: bool = True) -> Pairs:
    """n (prompt_ids, completion_ids, loss_mask) from the task's training split; completions end with EOS.

    A demonstration's tool-output blocks (```output ...```, `rlreason.rollout.tools.split_outputs`) are
    tokenised on their own, as the engine appends them, and with `mask_tool_output` get loss mask 0."""
    from rlreason.rollout.tools import split_outputs

    out = []
    for s in itertools.islice(task.train_samples(), n):
        ids: List[int] = []
        mask: List[int] = []
        for piece, tool in split_outputs(task.demonstration(s)):
            piece_ids = tokenizer(piece, add_special_tokens=False).input_ids
            ids += piece_ids
            mask += [0 if (tool and mask_tool_output) else 1] * len(piece_ids)
        out.append((prompt_ids(s, tokenizer), ids + [tokenizer.eos_token_id], mask + [1]))
    return out


@DEMOS.register("task", samples=False)
def task_demos(task, model, tokenizer, cfg) -> Tuple[Pairs, Dict[str, float]]:
    """The task's worked demonstrations: `examples` of them from its training split."""
    data = make_examples(task, tokenizer, cfg.examples, cfg.mask_tool_output)
    return data, {"demos/examples": len(data)}


def shortest_correct(lengths: Sequence[int], correct: Sequence[bool], stopped: Sequence[bool],
                     k: int) -> List[Optional[int]]:
    """For each prompt (k consecutive completions), the index of its shortest correct completion that stopped
    by itself; None when it has none. Ties go to the first sampled.

    A completion that hit the token limit (`stopped` False) never counts, correct or not: it did not end, so
    it would teach the model not to stop. Example, k=3, lengths [5, 3, 3, 4, 9, 2], correct [1, 1, 1, 0, 1, 1],
    stopped [1, 1, 1, 1, 1, 0] -> [1, 4]: prompt 0's two 3-token answers tie and the first wins; prompt 1's
    2-token answer was cut off, so its 9-token one is kept.
    """
    if not (len(lengths) == len(correct) == len(stopped)) or k < 1 or len(lengths) % k:
        raise ValueError(f"shortest_correct: {len(lengths)} lengths, {len(correct)} verdicts, {len(stopped)} "
                         f"stop flags for groups of k={k}")
    out: List[Optional[int]] = []
    for start in range(0, len(lengths), k):
        ok = [i for i in range(start, start + k) if correct[i] and stopped[i]]
        out.append(min(ok, key=lambda i: (lengths[i], i)) if ok else None)
    return out


def answer_tokens(token_ids: Sequence[int], stop_ids: Sequence[int], eos_id: int) -> Tuple[List[int], int]:
    """(the demonstration's completion ids, its length without the final stop token). A completion that ended
    with a stop token keeps it (the demonstration ends as the model's own answers do); one stopped another way
    (a stop string) gets `eos_id` appended. Example: ([7, 8, 1], stop [1]) -> ([7, 8, 1], 2); [7, 8] -> ([7, 8, 1], 2)."""
    ids = list(token_ids)
    if ids and ids[-1] in stop_ids:
        return ids, len(ids) - 1
    return ids + [eos_id], len(ids)


@DEMOS.register("shortest_of_k", samples=True)
def shortest_of_k(task, model, tokenizer, cfg) -> Tuple[Pairs, Dict[str, float]]:
    """Shortest rejection sampling (Kimi k1.5 §2.4): the shortest correct of `sample_k` samples per training prompt."""
    from rlreason.rewards.routing import Scorer
    from rlreason.rollout.hf import HFEngine

    t0 = time.time()
    samples = list(itertools.islice(task.train_samples(), cfg.sample_prompts))
    engine = HFEngine(model, tokenizer)
    rollout = sample_with_progress(engine, samples, cfg.sample_k, cfg.sample_temperature,
                                   cfg.sample_max_new_tokens or cfg.max_positions // 2)
    correct = Scorer.for_all(task.default_rewards).correct(rollout)  # [P * k]
    trimmed = [answer_tokens(c.token_ids, engine.stop_ids, tokenizer.eos_token_id) for c in rollout.completions]
    lengths = [n for _, n in trimmed]
    chosen = shortest_correct(lengths, correct, [not c.truncated for c in rollout.completions], cfg.sample_k)
    data = [(rollout.prompt_ids[p], trimmed[i][0]) for p, i in enumerate(chosen) if i is not None]
    if not data:
        raise DataError(f"shortest_of_k: none of {len(samples)} prompts had a correct completion among "
                         f"{cfg.sample_k} samples; raise sample_k or sample_max_new_tokens")
    kept = [lengths[i] for i in chosen if i is not None]
    return data, {"demos/prompts": len(samples), "demos/with_correct": len(data),
                  "demos/correct_rate": sum(map(bool, correct)) / len(correct),
                  "demos/truncated": sum(c.truncated for c in rollout.completions) / len(correct),
                  "demos/sampled_tokens": sum(lengths) / len(lengths),
                  "demos/correct_tokens": sum(n for n, ok in zip(lengths, correct) if ok) / max(1, sum(map(bool, correct))),
                  "demos/kept_tokens": sum(kept) / len(kept), "demos/sample_seconds": round(time.time() - t0, 1)}


def sample_with_progress(engine, samples, k: int, temperature: float, max_new_tokens: int,
                         every_s: float = 10.0) -> Rollout:
    """`engine.generate(samples, k, ...)` in chunks of whole engine batches (so the same random numbers are drawn
    in the same order: the result is the one call's, bit for bit), printing progress at most every `every_s`."""
    per = math.lcm(engine.batch_size, k) // k  # prompts per chunk: its rows fill whole engine batches
    t0 = last = time.time()
    parts: List[Rollout] = []
    for start in range(0, len(samples), per):
        parts.append(engine.generate(samples[start:start + per], k, temperature, 1.0, max_new_tokens))
        done = min(start + per, len(samples))
        if time.time() - last >= every_s or done == len(samples):
            last = time.time()
            print(f"[sft] shortest_of_k: sampled {done}/{len(samples)} prompts x {k} ({last - t0:.0f} s)", flush=True)
    return Rollout(samples=[s for r in parts for s in r.samples], completions=[c for r in parts for c in r.completions],
                   group_size=k, prompt_ids=[p for r in parts for p in r.prompt_ids])
