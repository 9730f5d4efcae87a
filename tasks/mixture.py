"""Task mixtures and reward routing: what the trainer builds from `data:` and how it scores by task.

`build_task(cfg.data, seed, rewards, tokenizer)` always returns a `Mixture`: one
entry per `data.mixture` item, or a single entry for `data.task`/`data.params`.
Each entry has a name (default: its task), a sampling weight, its reward terms
(default: the task's `default_rewards`; a single-task run uses the top-level
`rewards:`) and an optional eval size. Every sample is re-rendered by
`data.template` and tagged `Sample.task = entry name`, so
`score_by_task(rollout, mixture.rewards_by_task)` routes each group of
completions to its own terms. Example:

    data:
      mixture:
        - {task: reasoning_gym, name: sums, params: {dataset: chain_sum}, weight: 3}
        - {task: reasoning_gym, name: legs, params: {dataset: leg_counting}, weight: 1}

draws about 3 `sums` prompts per `legs` prompt, in an order fixed by the seed.
"""
from __future__ import annotations

import inspect
import logging
import random
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from rlreason.rewards import as_term, compute_rewards, correctness_term, validate_params
from rlreason.types import Rollout, Sample

from . import TASKS
from .base import DataError, Task
from .templates import TEMPLATES, apply_template, prompt_token_len

log = logging.getLogger("rlreason.tasks")
CORRECT = "correct"  # per_term key added by score_by_task: 1.0 where the sample's correctness term scored > 0


@dataclass
class Entry:
    name: str
    task: Task
    weight: float
    rewards: List[Any]
    eval_size: Optional[int]


def entries_of(data) -> List[Dict[str, Any]]:
    """The mixture items of a DataConfig as plain dicts (a single-task config gives one, with rewards None)."""
    if data.mixture:
        return [{"task": m.task, "name": m.name or m.task, "params": dict(m.params or {}), "weight": m.weight,
                 "rewards": list(m.rewards), "eval_size": m.eval_size} for m in data.mixture]
    return [{"task": data.task, "name": data.task, "params": dict(data.params or {}), "weight": 1.0,
             "rewards": None, "eval_size": None}]


def check_data(data) -> None:
    """Config-time checks of `data.*` (no data is read); raises ValueError naming the key."""
    from rlreason.tasks.files import BAD_ROW_POLICIES

    if data.template not in TEMPLATES:
        raise ValueError(f"data.template: unknown name '{data.template}'; known: {', '.join(TEMPLATES.names())}")
    if data.on_bad_row not in BAD_ROW_POLICIES:
        raise ValueError(f"data.on_bad_row: '{data.on_bad_row}' is not error | skip")
    if data.max_prompt_tokens < 0:
        raise ValueError("data.max_prompt_tokens: must be >= 0 (0 = no limit)")
    seen = set()
    for i, m in enumerate(data.mixture):
        key = f"data.mixture[{i}]"
        if m.task not in TASKS:
            raise ValueError(f"{key}.task: unknown name '{m.task}'; known: {', '.join(TASKS.names())}")
        try:
            TASKS.get(m.task).check_params(dict(m.params or {}))
        except ValueError as err:
            raise ValueError(f"{key}.params: {err}") from None
        name = m.name or m.task
        if name in seen:
            raise ValueError(f"{key}.name: '{name}' is used twice; give each entry a distinct name")
        seen.add(name)
        if not m.weight > 0:
            raise ValueError(f"{key}.weight: must be > 0")
        if m.eval_size is not None and m.eval_size < 0:
            raise ValueError(f"{key}.eval_size: must be >= 0")
        for j, t in enumerate(m.rewards):
            try:
                validate_params(t.name, t.params)
            except (ValueError, KeyError) as err:
                raise ValueError(f"{key}.rewards[{j}]: {err}") from None


class Mixture(Task):
    """Several tasks in one run: weighted, seeded sampling; samples tagged with their entry's name."""

    name = "mixture"

    def __init__(self, entries: List[Entry], seed: int = 0, template: str = "task", system_prompt: str = ""):
        self.entries, self.seed, self.template, self.system_prompt = entries, seed, template, system_prompt
        self.params = {}
        self.rewards_by_task: Dict[str, List[Any]] = {e.name: e.rewards for e in entries}
        self.too_long: Dict[str, set] = {e.name: set() for e in entries}

    def render(self, entry: Entry, sample: Sample) -> Sample:
        s = apply_template(sample, self.template, self.system_prompt)
        return s if s.task == entry.name else _retag(s, entry.name)

    def check_prompt_lengths(self, tokenizer, max_tokens: int, on_bad_row: str) -> None:
        """Load-time check of every prompt of the finite (file) tasks against `max_tokens`."""
        skipped = 0
        for e in self.entries:
            if not hasattr(e.task, "all_samples"):
                continue  # procedural: prompt size is set by the generator's params
            for s in e.task.all_samples():
                n = prompt_token_len(self.render(e, s), tokenizer)
                if n > max_tokens:
                    if on_bad_row == "error":
                        raise DataError(f"{s.meta.get('source', s.id)}: prompt is {n} tokens, over "
                                        f"data.max_prompt_tokens={max_tokens} (set data.on_bad_row=skip to skip such rows)")
                    self.too_long[e.name].add(s.id)
                    skipped += 1
        if skipped:
            log.warning("skipped %d over-long prompts (> %d tokens): %s", skipped, max_tokens,
                        ", ".join(f"{k} {len(v)}" for k, v in self.too_long.items() if v))

    def _stream(self, e: Entry) -> Iterator[Sample]:
        for s in e.task.train_samples():
            if s.id not in self.too_long[e.name]:
                yield self.render(e, s)

    def train_samples(self) -> Iterator[Sample]:
        """Endless stream: each draw picks an entry with probability weight / sum(weights) (seeded)."""
        rng = random.Random(self.seed)
        streams = [self._stream(e) for e in self.entries]
        weights = [e.weight for e in self.entries]
        idx = list(range(len(streams)))
        while True:
            yield next(streams[rng.choices(idx, weights)[0]])

    def eval_samples(self, n: int) -> List[Sample]:
        """Each entry's held-out samples (its eval_size, else n), entries in config order."""
        out: List[Sample] = []
        for e in self.entries:
            k = n if e.eval_size is None else e.eval_size
            out += [self.render(e, s) for s in e.task.eval_samples(k) if s.id not in self.too_long[e.name]]
        return out


def _retag(sample: Sample, task: str) -> Sample:
    from dataclasses import replace

    return replace(sample, task=task)


def build_task(data, seed: int = 0, rewards: Optional[Sequence[Any]] = None, tokenizer=None) -> Mixture:
    """The run's task from a DataConfig: loads and checks every data file now (never mid-run).

    `rewards` are the top-level terms used when there is no mixture; `tokenizer`
    enables the `data.max_prompt_tokens` check (skipped without one).
    """
    entries = []
    for item in entries_of(data):
        cls = TASKS.get(item["task"])
        kwargs = {"on_bad_row": data.on_bad_row} if "on_bad_row" in inspect.signature(cls.__init__).parameters else {}
        task = cls(item["params"], seed=seed, **kwargs)
        terms = item["rewards"] if item["rewards"] else (rewards if item["rewards"] is None and rewards else task.default_rewards)
        entries.append(Entry(item["name"], task, item["weight"], [as_term(t) for t in terms], item["eval_size"]))
    mix = Mixture(entries, seed, data.template, data.system_prompt)
    if tokenizer is not None and data.max_prompt_tokens:
        mix.check_prompt_lengths(tokenizer, data.max_prompt_tokens, data.on_bad_row)
    return mix


def score_by_task(rollout: Rollout, rewards_by_task: Dict[str, Sequence[Any]],
                  step: int = 0) -> Tuple[List[float], Dict[str, List[float]], Dict[str, int]]:
    """Score each task's groups with its own terms; results merged back in completion order.

    Returns (total [N], {term: [N]} (0.0 where a term does not apply) plus
    `CORRECT` ([N] 1.0 where the sample's correctness term scored > 0), counts
    summed over tasks). Groups stay whole: a part is a Rollout of whole prompts.
    """
    G, N = rollout.group_size, len(rollout)
    by_task: Dict[str, List[int]] = {}
    for p, s in enumerate(rollout.samples):
        by_task.setdefault(s.task, []).append(p)
    unknown = [t for t in by_task if t not in rewards_by_task]
    if unknown:
        raise ValueError(f"samples of task '{unknown[0]}' have no reward terms; tasks with terms: "
                         f"{', '.join(rewards_by_task)}")
    total, per_term, counts = [0.0] * N, {}, {}
    correct = [0.0] * N
    for task, prompts in by_task.items():
        terms = [as_term(t) for t in rewards_by_task[task]]
        part = Rollout([rollout.samples[p] for p in prompts],
                       [rollout.completions[p * G + g] for p in prompts for g in range(G)], G,
                       [rollout.prompt_ids[p] for p in prompts] if rollout.prompt_ids else [])
        t, pt, c = compute_rewards(part, terms, step=step)
        where = [p * G + g for p in prompts for g in range(G)]  # [n] completion index in the full rollout
        judge = pt[correctness_term(terms).name]
        for k, i in enumerate(where):
            total[i] = t[k]
            correct[i] = 1.0 if judge[k] > 0 else 0.0
        for name, scores in pt.items():
            column = per_term.setdefault(name, [0.0] * N)
            for k, i in enumerate(where):
                column[i] = scores[k]
        for key, v in c.items():
            counts[key] = counts.get(key, 0) + v
    per_term[CORRECT] = correct
    return total, per_term, counts
