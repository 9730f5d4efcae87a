"""Code problems from a local JSONL file, MBPP-style (Austin et al., 2021, arXiv 2108.07732).

One problem per line:

    {"id": "add", "prompt": "Write f(a, b) returning a + b.", "tests": ["assert f(1, 2) == 3"]}
    {"id": "echo", "text": "Read a line and print it twice.", "cases": [{"input": "hi\\n", "output": "hi\\nhi\\n"}]}

Keys: `prompt` (or MBPP's `text`), then `tests` (assert strings), `cases`
(stdin/stdout pairs) or both; optional `id` (default: the line number),
`prelude` (code run first, e.g. imports), `solution` (a reference program,
used as the SFT demonstration). A row is held out when crc32 of its id is
divisible by `heldout_mod` (0 = evaluate on every row). Reward: `code_tests`.
A bad row (text that is not UTF-8, a blank prompt included) raises ValueError naming the file and line
before any model loads.
"""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List

from rlreason.jsonl import json_objects
from rlreason.types import Sample

from .base import TASKS
from .base import Task, epochs
from .readers import check_utf8

INSTRUCTION = "{problem}\n\nReply with a Python program in one ```python code block."
_KEYS = {"id", "prompt", "text", "tests", "cases", "prelude", "solution"}


def load_rows(path: str) -> List[Dict[str, Any]]:
    """Parse and check every row of `path`; ValueError "FILE line N: ..." on the first bad one."""
    if not os.path.isfile(path):
        raise ValueError(f"code_jsonl: no such file {path!r}")
    rows = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for n, where, row in json_objects(_utf8_lines(f, path), path):
            unknown = set(row) - _KEYS
            if unknown:
                raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
            problem = row.get("prompt", row.get("text"))
            if not isinstance(problem, str):
                raise ValueError(f"{where}: needs a 'prompt' (or 'text') string")
            if not problem.strip():
                raise ValueError(f"{where}: empty prompt (field '{'prompt' if 'prompt' in row else 'text'}' is blank)")
            tests, cases = row.get("tests", []), row.get("cases", [])
            if not (isinstance(tests, list) and all(isinstance(t, str) for t in tests)):
                raise ValueError(f"{where}: 'tests' must be a list of assert strings")
            if not (isinstance(cases, list) and all(isinstance(c, dict) and set(c) == {"input", "output"} for c in cases)):
                raise ValueError(f"{where}: 'cases' must be a list of {{\"input\", \"output\"}} objects")
            if not tests and not cases:
                raise ValueError(f"{where}: needs 'tests' or 'cases'")
            row.setdefault("id", str(n))
            rows.append(row)
    if not rows:
        raise ValueError(f"code_jsonl: {path} has no rows")
    return rows


def _utf8_lines(lines, path: str) -> Iterator[str]:
    """`lines` (read with errors="surrogateescape") as they are; ValueError "FILE line N: not UTF-8 (...)" on a
    line that is not UTF-8."""
    for n, line in enumerate(lines, 1):
        bad = check_utf8(line)
        if bad:
            raise ValueError(f"{path} line {n}: {bad.problem}")
        yield line


@dataclass
class CodeJsonlParams:
    path: str = ""
    heldout_mod: int = 0

    def check(self) -> None:
        if not self.path:
            raise ValueError("code_jsonl needs data.params.path (a JSONL file)")
        if type(self.heldout_mod) is not int or self.heldout_mod < 0:
            raise ValueError("heldout_mod must be an integer >= 0 (0 = evaluate on every row)")
        load_rows(self.path)


@TASKS.register("code_jsonl")
class CodeJsonl(Task):
    """Code problems from a local JSONL file (assert tests and/or stdin/stdout cases), reward code_tests."""

    name = "code_jsonl"
    Params = CodeJsonlParams
    default_rewards = [{"name": "code_tests", "weight": 1.0}]

    def __init__(self, params: Dict | None = None, seed: int = 0):
        super().__init__(params, seed)
        self.rows = load_rows(self.p.path)

    def is_heldout(self, row: Dict[str, Any]) -> bool:
        return self.p.heldout_mod > 0 and zlib.crc32(str(row["id"]).encode()) % self.p.heldout_mod == 0

    def _sample(self, row: Dict[str, Any]) -> Sample:
        problem = row.get("prompt", row.get("text"))
        answer = {key: row[key] for key in ("tests", "cases", "prelude") if row.get(key)}  # code_tests' format
        return Sample(id=str(row["id"]), task=self.name, answer=answer,
                      messages=[{"role": "user", "content": INSTRUCTION.format(problem=problem)}],
                      meta={"solution": row.get("solution")})

    def train_samples(self) -> Iterator[Sample]:
        pool = [r for r in self.rows if not self.is_heldout(r)] or self.rows
        yield from (self._sample(r) for r in epochs(pool, self.seed))

    def eval_samples(self, n: int) -> List[Sample]:
        rows = [r for r in self.rows if self.is_heldout(r)] if self.p.heldout_mod else self.rows
        return [self._sample(r) for r in rows[:n]]

    def demonstration(self, sample: Sample) -> str:
        if not sample.meta.get("solution"):
            raise NotImplementedError(f"code_jsonl row {sample.id!r} has no 'solution' to demonstrate")
        return "```python\n" + sample.meta["solution"].rstrip("\n") + "\n```"
