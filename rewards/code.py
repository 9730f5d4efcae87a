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

The tests run in the sandbox's judge process, never in the program's: the program's functions are
called through proxies that exchange plain data (`rlreason.rewards.sandbox`), so a program can pass
only by returning the right values.

Worked example: answer {"tests": ["assert f(1) == 2", "assert f(2) == 3"]}, completion
"```python\\ndef f(x):\\n    return x + 1\\n```" -> 1.0; with `return 2` -> 0.0
(pass_fail) or 0.5 (fraction).
"""
from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

from rlreason.rewards.terms import REWARDS, RewardError
from rlreason.rewards.sandbox import Job, Limits, SandboxError, run
from rlreason.types import ERROR, OK, WRONG, RewardOutput, Rollout, Sample

SCORINGS = ("pass_fail", "fraction")
log = logging.getLogger(__name__)
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
    """The sandbox jobs that test `code` against `sample.answer` (one per test format present). The
    prelude and prefix (the task's prompt) are also the judge's trusted context, so helpers the tests use
    (HumanEval's `poly`) come from the task, never from the program."""
    answer = sample.answer
    if not isinstance(answer, dict):
        raise ValueError(f"sample {sample.id!r}: code answer must be a dict with tests/check/cases, got {type(answer).__name__}")
    prefix, prelude = str(answer.get("prefix", "")), str(answer.get("prelude", ""))
    code = prefix + code
    tests = [str(t) for t in answer.get("tests", [])]
    entry_points: List[str] = []
    if "check" in answer:
        if "entry_point" not in answer:
            raise ValueError(f"sample {sample.id!r}: 'check' needs an 'entry_point'")
        entry_points.append(str(answer["entry_point"]))
        tests.append(f"{answer['check']}\ncheck({answer['entry_point']})")
    context = "\n".join(p for p in (prelude, prefix) if p)
    jobs = [Job(code=code, tests=tests, prelude=prelude, context=context, entry_points=entry_points,
                limits=limits)] if tests else []
    cases = answer.get("cases", [])
    if cases:
        for c in cases:
            if not isinstance(c, dict) or set(c) != {"input", "output"}:
                raise ValueError(f"sample {sample.id!r}: each case needs exactly 'input' and 'output'")
        jobs.append(Job(code=code, cases=[dict(c) for c in cases], mode="stdio", limits=limits))
    if not jobs:
        raise ValueError(f"sample {sample.id!r}: answer has no tests, check or cases")
    return jobs


def _verdict(results: List[object], scoring: str) -> Tuple[float, str, Optional[str]]:
    """(score, outcome, counter to bump) of one completion from its jobs' Results (or SandboxErrors).

    The sandbox failing is "error" (no evidence either way); a program that timed out or was stopped
    for a violation failed its tests: "wrong", counted. The score is clamped to [0, 1]."""
    if any(isinstance(r, Exception) for r in results):
        return 0.0, ERROR, "errors"
    for r in results:
        if r.status != "ok":
            return 0.0, WRONG, "timeouts" if r.status == "timeout" else "violations"
    passed, total = sum(r.passed for r in results), sum(r.total for r in results)
    if not 0 <= passed <= total:  # the runner checks this too; a verdict out of range is never a reward
        return 0.0, WRONG, "violations"
    if scoring == "fraction":
        score = min(1.0, max(0.0, passed / total)) if total else 0.0
    else:
        score = 1.0 if total and passed == total else 0.0
    return score, OK if score > 0 else WRONG, None


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
    `memory_mb` of memory; `workers` sandboxes run at once. A timeout or a
    violation (killed by a limit, or the program broke the sandbox's protocol)
    scores 0, is the outcome "wrong" and is counted in `timeouts` / `violations`.
    When the sandbox itself fails for a sample, that sample scores 0 with the
    outcome "error" (counted in `errors`, logged) and the batch goes on.
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

    def run_one(item: Tuple[int, Job]) -> object:
        i, job = item
        try:
            return run(job)
        except (SandboxError, OSError) as e:  # the sandbox broke, not the program: this sample is unchecked
            log.warning("code_tests: completion %d of sample %r could not be checked: %s", i, rollout.sample_of(i).id, e)
            return e

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run_one, plan))
    per_completion: Dict[int, List[object]] = {}
    for (i, _), result in zip(plan, results):
        per_completion.setdefault(i, []).append(result)
    scores, outcomes, counts = [], [], {"timeouts": 0, "violations": 0, "errors": 0}
    for i in range(len(rollout)):
        score, outcome, counter = _verdict(per_completion[i], scoring)
        scores.append(score)
        outcomes.append(outcome)
        if counter:
            counts[counter] += 1
    return RewardOutput(scores=scores, counts=counts, outcomes=outcomes)
