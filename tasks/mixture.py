"""Task mixtures: what a run samples from `data:` (tasks know no rewards; routing lives in rewards/).

`build_task(cfg.data, seed, tokenizer, max_prompt_tokens)` always returns a `Mixture`: one entry
per `data.mixture` item, or a single entry for `data.task`/`data.params`. Each
entry has a name (default: its task), a sampling weight and an optional eval
size. Every sample is re-rendered by `data.template` and tagged
`Sample.task = entry name`, which is what `rlreason.rewards.routing.Scorer`
routes each group of completions by. Example:

    data:
      mixture:
        - {task: reasoning_gym, name: sums, params: {dataset: chain_sum}, weight: 3}
        - {task: reasoning_gym, name: legs, params: {dataset: leg_counting}, weight: 1}

draws about 3 `sums` prompts per `legs` prompt, in an order fixed by the seed.

Prompt length (`data.max_prompt_tokens`): N > 0 tokens after the template; 0 (`AUTO`, the default) =
the model's context minus `rollout.max_new_tokens`, which the caller that loaded the model passes as
`max_prompt_tokens`; -1 (`NO_LIMIT`) = no check. A longer prompt of a file task is a bad row
(`data.on_bad_row`); procedural tasks (no `all_samples`) size their prompts by their params.
"""
from __future__ import annotations

import inspect
import logging
import random
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

from rlreason.errors import ConfigError
from rlreason.types import Sample

from .base import TASKS
from .base import DataError, Task
from .templates import TEMPLATES, apply_template, prompt_token_len

log = logging.getLogger("rlreason.tasks")
AUTO, NO_LIMIT = 0, -1  # data.max_prompt_tokens: the model's context minus rollout.max_new_tokens | no check


@dataclass
class Entry:
    name: str
    task: Task
    weight: float
    eval_size: Optional[int]


def entries_of(data) -> List[Dict[str, Any]]:
    """The mixture items of a DataConfig as plain dicts (a single-task config gives one)."""
    if data.mixture:
        return [{"task": m.task, "name": m.name or m.task, "params": dict(m.params or {}), "weight": m.weight,
                 "eval_size": m.eval_size} for m in data.mixture]
    return [{"task": data.task, "name": data.task, "params": dict(data.params or {}), "weight": 1.0,
             "eval_size": None}]


def check_data(data) -> None:
    """Config-time checks of `data.*` (no data is read; reward terms are checked with the config's own);
    raises ValueError naming the key."""
    from rlreason.tasks.files import BAD_ROW_POLICIES

    if data.template not in TEMPLATES:
        raise ValueError(f"data.template: unknown name '{data.template}'; known: {', '.join(TEMPLATES.names())}")
    if data.on_bad_row not in BAD_ROW_POLICIES:
        raise ValueError(f"data.on_bad_row: '{data.on_bad_row}' is not error | skip")
    if data.max_prompt_tokens < NO_LIMIT:
        raise ValueError("data.max_prompt_tokens: must be a number of tokens, 0 (the model's context minus "
                         "rollout.max_new_tokens) or -1 (no limit)")
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


class Mixture(Task):
    """Several tasks in one run: weighted, seeded sampling; samples tagged with their entry's name."""

    name = "mixture"

    def __init__(self, entries: List[Entry], seed: int = 0, template: str = "task", system_prompt: str = ""):
        self.entries, self.seed, self.template, self.system_prompt = entries, seed, template, system_prompt
        self.params = {}
        self.too_long: Dict[str, set] = {e.name: set() for e in entries}

    def render(self, entry: Entry, sample: Sample) -> Sample:
        s = apply_template(sample, self.template, self.system_prompt)
        return s if s.task == entry.name else _retag(s, entry.name)

    def check_prompt_lengths(self, tokenizer, max_tokens: int, on_bad_row: str, limit: str = "") -> None:
        """Load-time check of every prompt of the finite (file) tasks against `max_tokens`; `limit` names it in
        messages (default `data.max_prompt_tokens=N`)."""
        limit = limit or f"data.max_prompt_tokens={max_tokens}"
        skipped = 0
        for e in self.entries:
            if not hasattr(e.task, "all_samples"):
                continue  # procedural: prompt size is set by the generator's params
            for s in e.task.all_samples():
                n = prompt_token_len(self.render(e, s), tokenizer)
                if n > max_tokens:
                    if on_bad_row == "error":
                        raise DataError(f"{s.meta.get('source', s.id)}: prompt is {n} tokens, over {limit} "
                                        "(set data.on_bad_row=skip to skip such rows)")
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


def build_task(data, seed: int = 0, tokenizer=None, max_prompt_tokens: Optional[int] = None) -> Mixture:
    """The run's task from a DataConfig: loads and checks every data file now (never mid-run).

    `tokenizer` enables the `data.max_prompt_tokens` check (skipped without one). `max_prompt_tokens` is
    the limit its 0 (auto) stands for: the model's context minus `rollout.max_new_tokens`, computed by the
    caller that loaded the model (None: not known, no check).
    """
    entries = []
    for item in entries_of(data):
        cls = TASKS.get(item["task"])
        kwargs = {"on_bad_row": data.on_bad_row} if "on_bad_row" in inspect.signature(cls.__init__).parameters else {}
        task = cls(item["params"], seed=seed, **kwargs)
        entries.append(Entry(item["name"], task, item["weight"], item["eval_size"]))
    mix = Mixture(entries, seed, data.template, data.system_prompt)
    limit, name = _prompt_limit(data.max_prompt_tokens, max_prompt_tokens)
    if tokenizer is not None and limit is not None and any(hasattr(e.task, "all_samples") for e in entries):
        if limit <= 0:
            raise ConfigError(f"data.max_prompt_tokens=0 (auto): the model's context minus rollout.max_new_tokens is "
                              f"{limit} tokens, no room for a prompt; lower rollout.max_new_tokens or set data.max_prompt_tokens")
        mix.check_prompt_lengths(tokenizer, limit, data.on_bad_row, name)
    return mix


def _prompt_limit(configured: int, auto: Optional[int]) -> Tuple[Optional[int], str]:
    """(the prompt-token limit or None for no check, its name in messages) from `data.max_prompt_tokens` and
    the caller's auto limit."""
    if configured > 0:
        return configured, f"data.max_prompt_tokens={configured}"
    if configured == AUTO and auto is not None:
        return auto, f"{auto}, the model's context minus rollout.max_new_tokens"
    return None, ""  # NO_LIMIT, or a model whose context is not known

