"""The task protocol shared by all tasks, and the pieces the built-in tasks share.

- `Task`: a subclass declares `Params`, a dataclass whose fields are the
  accepted `data.params` keys, optionally with a `check()` that raises
  ValueError. The base class rejects unknown keys, builds `Params(**params)`
  and runs its `check()`: in `check_params` (config time, before any model
  loads) and in `__init__`, which keeps the result as `self.p`.
- `epochs(items, seed)`: the endless training stream of a finite task, one
  seeded shuffle per epoch.
"""
from __future__ import annotations

import inspect
import random
from typing import Any, Dict, Iterator, List, Optional, Sequence, TypeVar

from rlreason.errors import DataError  # noqa: F401  (re-exported for the task modules)
from rlreason.registry import Registry
from rlreason.types import Sample

T = TypeVar("T")
TASKS = Registry("task")  # name -> Task subclass (re-exported as rlreason.tasks.TASKS)


def epochs(items: Sequence[T], seed: int) -> Iterator[T]:
    """Endless stream of `items`: each epoch is a fresh permutation, drawn from `random.Random(seed)`.

    >>> import itertools
    >>> list(itertools.islice(epochs("abc", seed=0), 6))
    ['a', 'c', 'b', 'c', 'b', 'a']
    """
    if not items:
        raise ValueError("epochs: no items to stream")
    rng = random.Random(seed)
    while True:
        order = list(range(len(items)))
        rng.shuffle(order)
        for i in order:
            yield items[i]


class Task:
    """Base class: subclasses set `name`, `Params`, `default_rewards` and override the methods."""

    name = "base"
    Params: Optional[type] = None
    default_rewards: List[Dict[str, Any]] = []

    def __init__(self, params: Dict[str, Any] | None = None, seed: int = 0):
        self.params = dict(params or {})
        self.seed = seed
        self.p = self.build_params(self.params)

    @classmethod
    def check_params(cls, params: Dict[str, Any]) -> None:
        """Raise ValueError naming a bad parameter: one `Params` does not know, or one its `check()` rejects."""
        cls.build_params(params)

    @classmethod
    def build_params(cls, params: Dict[str, Any]) -> Any:
        """`cls.Params(**params)`, checked (None for a task without `Params`, which accepts no parameters)."""
        accepted = set(inspect.signature(cls.Params).parameters) if cls.Params is not None else set()
        for key in params:
            if key not in accepted:
                raise ValueError(f"task '{cls.name}' has no param '{key}'; accepted: {', '.join(sorted(accepted)) or '(none)'}")
        if cls.Params is None:
            return None
        p = cls.Params(**params)
        if hasattr(p, "check"):
            p.check()
        return p

    def train_samples(self) -> Iterator[Sample]:
        raise NotImplementedError

    def eval_samples(self, n: int) -> List[Sample]:
        raise NotImplementedError

    def demonstration(self, sample: Sample) -> str:
        raise NotImplementedError(f"task '{self.name}' has no demonstrations for SFT")
