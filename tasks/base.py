"""The task protocol shared by all tasks."""
from __future__ import annotations

import inspect
from typing import Any, Dict, Iterator, List

from rlreason.errors import DataError  # noqa: F401  (re-exported for the task modules)
from rlreason.types import Sample


class Task:
    """Base class: subclasses set `name`, `default_rewards` and override the methods."""

    name = "base"
    default_rewards: List[Dict[str, Any]] = []

    def __init__(self, params: Dict[str, Any] | None = None, seed: int = 0):
        self.check_params(params or {})
        self.params = dict(params or {})
        self.seed = seed

    @classmethod
    def check_params(cls, params: Dict[str, Any]) -> None:
        """Raise ValueError for a parameter `__init__` of the subclass's `Params` does not know."""
        accepted = set(inspect.signature(cls.Params).parameters) if hasattr(cls, "Params") else set()
        for key in params:
            if key not in accepted:
                raise ValueError(f"task '{cls.name}' has no param '{key}'; accepted: {', '.join(sorted(accepted)) or '(none)'}")

    def train_samples(self) -> Iterator[Sample]:
        raise NotImplementedError

    def eval_samples(self, n: int) -> List[Sample]:
        raise NotImplementedError

    def demonstration(self, sample: Sample) -> str:
        raise NotImplementedError(f"task '{self.name}' has no demonstrations for SFT")
