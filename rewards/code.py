"""Code correctness: run the completion's program against the sample's tests in the sandbox.

Test formats (the sample's `answer`, a dict), as in HumanEval (Chen et al., 2021,
arXiv 2107.03374), MBPP (Austin et al., 2021, arXiv 2108.07732) and competitive
programming (stdin/stdout, e.g. APPS / CodeContests):

- `{"tests": ["assert f(1) == 2", ...]}`: each assert string is one test;
- `{"check": "def check(candidate): ...", "entry_point": "f"}`: HumanEval's
  `check(f)` is one test;
- `{"cases": [{"input": "1 2\\n", "output": "3\\n"}, ...]}`: each case runs the
  program with that stdin and compares stdout (trailing whitespace ignored);
- optional `"prelude"`: code run before the program (e.g. `from typing import List`);
- optional `"prefix"`: text put in front of the extracted code (a base model's
  completion continues the prompt, e.g. HumanEval's signature and docstring).

Worked example: answer {"tests": ["assert f(1) == 2", "assert f(2) == 3"]}, completion
"```python\\ndef f(x):\\n    return x + 1\\n```" -> 1.0; with `return 2` -> 0.0
(pass_fail) or 0.5 (fraction).
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

from rlreason.rewards.terms import REWARDS, RewardError
from rlreason.rewards.sandbox import Job, Limits, Result, SandboxError, run
from rlreason.types import RewardOutput, Rollout, Sample

SCORINGS = ("pass_fail", "fraction")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S | re.I)


def extract_code(text: str) -> str:
    """The last fenced ```python (or bare ```) block of `text`; an unclosed last fence runs to the end;
    without fences, the whole text.

    >>> extract_code("Here:\\n```python\\nx = 1\\n```\\nand\\n```py\\nx = 2\\n```")
    'x = 2\\n'
    >>> extract_code("x = 3")
    'x = 3'
    """
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text


def jobs_for(sample: Sample, code: str, limits: Limits) -> List[Job]:
    """The sandbox jobs that test `code` against `sample.answer` (one per test format present)."""
    answer = sample.answer
    if not isinstance(answer, dict):
        raise ValueError(f"sample {sample.id!r}: code answer must be a dict with tests/check/cases, got {type(answer).__name__}")
    code = str(answer.get("prefix", "")) + code
    prelude = str(answer.get("prelude", ""))
    tests = [str(t) for t in answer.get("tests", [])]
    if "check" in answer:
        if "entry_point" not in answer:
            raise ValueError(f"sample {sample.id!r}: 'check' needs an 'entry_point'")
        tests.append(f"{answer['check']}\ncheck({answer['entry_point']})")
    jobs = [Job(code=code, tests=tests, prelude=prelude, limits=limits)] if tests else []
    cases = answer.get("cases", [])
    if cases:
        for c in cases:
            if not isinstance(c, dict) or set(c) != {"input", "output"}:
                raise ValueError(f"sample {sample.id!r}: each case needs exactly 'input' and 'output'")
        jobs.append(Job(code=code, cases=[dict(c) for c in cases], mode="stdio", limits=limits))
    if not jobs:
        raise ValueError(f"sample {sample.id!r}: answer has no tests, check or cases")
    return jobs


def _combine(results: List[Result]) -> Tuple[int, int, Optional[str]]:
    """(passed, total, stop reason) over a sample's jobs; a timeout/violation anywhere stops it."""
    for r in results:
        if r.status != "ok":
            return 0, 0, r.status
    return sum(r.passed for r in results), sum(r.total for r in results), None


@REWARDS.register("code_tests")
def code_tests(
    rollout: Rollout,
    scoring: str = "pass_fail",
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    workers: int = 2,
) -> RewardOutput:
    """Run the completion's code (last ```python block, else the whole text) against the sample's tests, sandboxed.

    `scoring: pass_fail` gives 1.0 when every test passes, else 0.0; `fraction`
    gives passed/total. Each sample's jobs get `timeout_s` wall clock and
    `memory_mb` of address space; `workers` sandboxes run at once. A timeout or
    a violation (killed by a limit, or the program bypassed the harness) scores
    0 and is counted in `timeouts` / `violations`.
    """
    if scoring not in SCORINGS:
        raise ValueError(f"code_tests: scoring must be one of {', '.join(SCORINGS)}, got {scoring!r}")
    if timeout_s <= 0 or memory_mb < 64 or workers < 1:
        raise ValueError("code_tests: need timeout_s > 0, memory_mb >= 64, workers >= 1")
    limits = Limits(timeout_s=float(timeout_s), cpu_s=max(1, int(timeout_s + 0.999)), memory_mb=int(memory_mb))
    plan: List[Tuple[int, Job]] = []
    for i, completion in enumerate(rollout.completions):
        sample = rollout.sample_of(i)
        try:
            plan += [(i, job) for job in jobs_for(sample, extract_code(completion.text), limits)]
        except ValueError as e:
            raise RewardError(f"completion {i} of sample {sample.id!r}: {e}", index=i, sample_id=sample.id) from e
    def run_one(item: Tuple[int, Job]) -> Result:
        i, job = item
        try:
            return run(job)
        except SandboxError as e:  # the sandbox broke, not the program: never a silent 0
            sample_id = rollout.sample_of(i).id
            raise RewardError(f"completion {i} of sample {sample_id!r}: {e}", index=i, sample_id=sample_id) from e

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run_one, plan))
    per_completion: Dict[int, List[Result]] = {}
    for (i, _), result in zip(plan, results):
        per_completion.setdefault(i, []).append(result)
    scores, counts = [], {"timeouts": 0, "violations": 0}
    for i in range(len(rollout)):
        passed, total, stop = _combine(per_completion[i])
        if stop is not None:
            counts["timeouts" if stop == "timeout" else "violations"] += 1
            scores.append(0.0)
        elif scoring == "fraction":
            scores.append(passed / total if total else 0.0)
        else:
            scores.append(1.0 if total and passed == total else 0.0)
    return RewardOutput(scores=scores, counts=counts)

