"""Reward routing by task and the one rule for "correct" (DESIGN.md: both live here, tasks know no rewards).

A run's `Scorer` holds each task's reward terms (`terms_by_task` picks them from the config) and scores a
rollout group by group: every prompt's G completions go to the terms of the prompt's `Sample.task`
(`Rollout.select_groups` cuts the rollout into per-task parts; results are put back in completion order).
Besides the per-term columns it fills `ScoredRollout.correct`: 1.0 where the sample's correctness term
scored > 0.

The correctness term of a list of terms is `rlreason.rewards.correctness_term` (math_answer when present,
else the first term); terms that need the verdicts (`kimi_length`) get them from `compute_rewards`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from rlreason.rewards.terms import as_term, compute_rewards, correctness_term
from rlreason.types import OK, Rollout, ScoredRollout

ANY_TASK = "*"  # a Scorer key that scores samples of every task without terms of their own


def terms_by_task(cfg, defaults: Dict[str, Sequence[Any]]) -> Dict[str, List[Any]]:
    """Each task's reward terms from a training config: a `data.mixture` entry's own `rewards`, else (one
    task) the top-level `rewards:`, else the task's defaults (`defaults[name]`, its `default_rewards`)."""
    if cfg.data.mixture:
        named = [(m.name or m.task, list(m.rewards)) for m in cfg.data.mixture]
    else:
        named = [(cfg.data.task, list(cfg.rewards))]
    return {name: [as_term(t) for t in (own or defaults[name])] for name, own in named}


ON_ERROR = ("mask", "zero")  # what training does with a sample whose check could not run (`rewards_on_error`)


class Scorer:
    """Stage 3: scores rollouts with each task's terms; `correct` gives the correctness verdicts only (eval).

    A sample some term could not check (outcome timeout or error) scores 0 for that term; with
    `on_error="mask"` it is also marked not `valid` (the update leaves it out, its group's baseline is
    computed without it), with "zero" it is trained on with that 0.
    """

    def __init__(self, terms: Dict[str, Sequence[Any]], on_error: str = "mask"):
        self.terms = {task: [as_term(t) for t in ts] for task, ts in terms.items()}
        unknown = [t for t in self.terms if not self.terms[t]]
        if unknown:
            raise ValueError(f"task '{unknown[0]}' has no reward terms")
        if on_error not in ON_ERROR:
            raise ValueError(f"rewards_on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        self.on_error = on_error

    @classmethod
    def for_all(cls, terms: Sequence[Any]) -> "Scorer":
        """One list of terms for samples of any task (e.g. SFT's held-out check)."""
        return cls({ANY_TASK: terms})

    def _parts(self, rollout: Rollout) -> Dict[str, List[int]]:
        """{task: its prompt indices in rollout order}, tasks in order of first appearance."""
        by_task: Dict[str, List[int]] = {}
        for p, s in enumerate(rollout.samples):
            task = s.task if s.task in self.terms else ANY_TASK
            if task not in self.terms:
                raise ValueError(f"samples of task '{s.task}' have no reward terms; tasks with terms: "
                                 f"{', '.join(self.terms)}")
            by_task.setdefault(task, []).append(p)
        return by_task

    def __call__(self, rollout: Rollout, step: int = 0) -> ScoredRollout:
        """The scored rollout: total [N], {term: [N]} (0.0 and outcome "ok" where a term does not apply),
        counters summed over tasks, `correct` [N] and `valid` [N]. `step` reaches the terms that take it."""
        N = len(rollout)
        out = ScoredRollout(rollout, [0.0] * N, {}, {}, [0.0] * N, {}, [True] * N)
        for task, prompts in self._parts(rollout).items():
            terms = self.terms[task]
            part = compute_rewards(rollout.select_groups(prompts), terms, step=step)
            where = rollout.rows_of(prompts)  # [n] completion index in the full rollout
            judge = part.per_term[correctness_term(terms).name]
            checked = part.checked()
            for k, i in enumerate(where):
                out.total[i] = part.total[k]
                out.correct[i] = 1.0 if judge[k] > 0 else 0.0
                out.valid[i] = checked[k] or self.on_error == "zero"
            for name in part.per_term:
                column = out.per_term.setdefault(name, [0.0] * N)
                marks = out.outcomes.setdefault(name, [OK] * N)
                for k, i in enumerate(where):
                    column[i], marks[i] = part.per_term[name][k], part.outcomes[name][k]
            for key, v in part.counts.items():
                out.counts[key] = out.counts.get(key, 0) + v
        return out

    def correct(self, rollout: Rollout) -> List[bool]:
        """[N] whether each completion's correctness term scores > 0 (only that term runs; a check that
        could not run counts as not correct)."""
        out: List[Optional[bool]] = [None] * len(rollout)
        for task, prompts in self._parts(rollout).items():
            term = correctness_term(self.terms[task])
            scores = compute_rewards(rollout.select_groups(prompts), [term]).per_term[term.name]
            for k, i in enumerate(rollout.rows_of(prompts)):
                out[i] = scores[k] > 0
        return out
