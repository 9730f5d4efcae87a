"""A custom reward term and a custom task, named by import path in a config (no registration code):

    rlreason train examples/custom.yaml      # from the repository root

or, in any config,

    data:
      task: "examples.my_rewards:TwoNumberSum"
    rewards:
      - {name: "examples.my_rewards:last_number", weight: 1.0, params: {tolerance: 0}}

`module.path:name` is imported (the working directory is on the path); `path/to/file.py:name` works too.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterator, List

from rlreason.tasks.base import Task
from rlreason.types import Rollout, RewardOutput, Sample

NUMBER = re.compile(r"-?\d+")


def last_number(rollout: Rollout, tolerance: int = 0) -> RewardOutput:
    """1.0 when the last integer in the completion is within `tolerance` of the sample's answer, else 0.0."""
    scores, missing = [], 0
    for i, completion in enumerate(rollout.completions):
        found = NUMBER.findall(completion.text)
        missing += not found
        gold = int(rollout.sample_of(i).answer)
        scores.append(1.0 if found and abs(int(found[-1]) - gold) <= tolerance else 0.0)
    return RewardOutput(scores=scores, counts={"no_number": missing},
                        outcomes=["ok" if s > 0 else "wrong" for s in scores])


@dataclass
class SumParams:
    """The accepted `data.params` keys, with their defaults; `check()` rejects bad values at config load."""

    max_value: int = 99

    def check(self) -> None:
        if not 1 <= self.max_value <= 10**6:
            raise ValueError(f"max_value must be in [1, 1000000] (got {self.max_value})")


class TwoNumberSum(Task):
    """`a+b` as a chat message; the answer is the sum. Held out: the problems with (a + 7 * b) % 10 == 0."""

    name = "two_number_sum"
    Params = SumParams
    default_rewards = [{"name": "examples.my_rewards:last_number", "weight": 1.0}]

    def _sample(self, a: int, b: int, split: str, idx: int) -> Sample:
        return Sample(id=f"sum/{split}/{idx}", task=self.name, answer=str(a + b),
                      messages=[{"role": "user", "content": f"{a}+{b}"}])

    def _problems(self, heldout: bool, seed: int) -> Iterator[Sample]:
        rng, idx = random.Random(seed), 0
        while True:
            a, b = rng.randint(0, self.p.max_value), rng.randint(0, self.p.max_value)
            if ((a + 7 * b) % 10 == 0) == heldout:
                yield self._sample(a, b, "heldout" if heldout else "train", idx)
                idx += 1

    def train_samples(self) -> Iterator[Sample]:
        return self._problems(False, self.seed)

    def eval_samples(self, n: int) -> List[Sample]:
        stream = self._problems(True, 1234)
        return [next(stream) for _ in range(n)]
