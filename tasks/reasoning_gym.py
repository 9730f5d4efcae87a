"""Procedural reasoning tasks from the `reasoning-gym` package (Stojanovski et al. 2025, arXiv 2505.24760).

Any of its ~100 generators by name, with that generator's own parameters, and
no download:

    data: {task: reasoning_gym, params: {dataset: chain_sum, config: {min_terms: 2, max_terms: 3}}}
    rewards: [{name: reasoning_gym}]

A sample's `answer` is the generator's full entry `{question, answer, metadata}`,
because the package's own scorer (`dataset.score_answer(answer, entry)`, used by the
`reasoning_gym` reward term) may need more than the reference string (some
generators have no single reference: `propositional_logic` checks the model's
formula against the premises).

Splits: the held-out pool is `heldout` items generated with a seed derived from
the dataset name (the same for every run seed); the training stream draws seeded
chunks of `chunk` items (seeds derived from run.seed) and, with `dedup`, skips any
item whose question is in the held-out pool.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List

from rlreason.types import Sample

from .base import TASKS
from .base import Task


def _rg():
    import reasoning_gym  # ~1 s import: only when a reasoning_gym task is used

    return reasoning_gym


def dataset_names() -> List[str]:
    from reasoning_gym.factory import DATASETS

    _rg()
    return sorted(DATASETS)


@dataclass
class ReasoningGymParams:
    dataset: str = ""
    """Generator name, e.g. chain_sum, leg_counting, spell_backward (`dataset_names()`)."""
    config: Dict[str, Any] = field(default_factory=dict)
    """The generator's own parameters (its config dataclass fields, except seed and size)."""
    heldout: int = 512
    """Size of the held-out pool (eval_samples(n) returns its first n)."""
    chunk: int = 1000
    """Training items generated per seeded chunk."""
    dedup: bool = True
    """Skip training items whose question is in the held-out pool."""

    def check(self) -> None:
        if not self.dataset:
            raise ValueError("dataset is required (a reasoning-gym generator name such as chain_sum)")
        names = dataset_names()
        if self.dataset not in names:
            raise ValueError(f"reasoning-gym has no dataset '{self.dataset}'; known: {', '.join(names)}")
        for key in ("seed", "size"):
            if key in self.config:
                raise ValueError(f"config.{key} is set by the task (run.seed, chunk); remove it")
        try:
            _rg().create_dataset(self.dataset, seed=0, size=1, **self.config)
        except (TypeError, ValueError, AssertionError) as err:
            raise ValueError(f"reasoning-gym '{self.dataset}' config {self.config}: {err}") from None
        if self.heldout < 0 or self.chunk < 1:
            raise ValueError("need heldout >= 0 and chunk >= 1")


def _seed(*parts: Any) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


@TASKS.register("reasoning_gym")
class ReasoningGym(Task):
    """Any reasoning-gym generator by name with its params (scored by the package's own scorer: reward `reasoning_gym`)."""

    name = "reasoning_gym"
    Params = ReasoningGymParams
    default_rewards = [{"name": "reasoning_gym", "weight": 1.0}]

    def __init__(self, params: Dict | None = None, seed: int = 0):
        super().__init__(params, seed)
        self.p.config = dict(self.p.config)
        self._pool: List[Sample] | None = None

    def _dataset(self, seed: int, size: int):
        return _rg().create_dataset(self.p.dataset, seed=seed, size=size, **self.p.config)

    def _sample(self, entry: Dict[str, Any], split: str, idx: int) -> Sample:
        q = entry["question"]
        return Sample(id=f"{self.name}/{self.p.dataset}/{split}/{idx}", task=self.name, answer=entry,
                      messages=[{"role": "user", "content": q}],
                      meta={"question": q, "rg_dataset": self.p.dataset, "rg_config": self.p.config,
                            "reference": entry.get("answer")})

    def heldout_pool(self) -> List[Sample]:
        """The held-out items, generated once (same for every run seed)."""
        if self._pool is None:
            ds = self._dataset(_seed("heldout", self.p.dataset), self.p.heldout) if self.p.heldout else []
            self._pool = [self._sample(ds[i], "heldout", i) for i in range(self.p.heldout)]
        return self._pool

    def train_samples(self) -> Iterator[Sample]:
        """Endless stream of seeded chunks, deterministic by run seed; held-out questions skipped (dedup)."""
        held = {s.meta["question"] for s in self.heldout_pool()} if self.p.dedup else set()
        k = idx = 0
        while True:
            ds = self._dataset(_seed("train", self.seed, k), self.p.chunk)
            for i in range(self.p.chunk):
                entry = ds[i]
                if entry["question"] not in held:
                    yield self._sample(entry, "train", idx)
                    idx += 1
            k += 1

    def eval_samples(self, n: int) -> List[Sample]:
        return self.heldout_pool()[:n]
