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
from rlreason.types import Rollout, ScoredRollout

ANY_TASK = "*"  # a Scorer key that scores samples of every task without terms of their own


def terms_by_task(cfg, defaults: Dict[str, Sequence[Any]]) -> Dict[str, List[Any]]:
    """Each task's reward terms from a training config: a `data.mixture` entry's own `rewards`, else (one
    task) the top-level `rewards:`, else the task's defaults (`defaults[name]`, its `default_rewards`)."""
    if cfg.data.mixture:
        named = [(m.name or m.task, list(m.rewards)) for m in cfg.data.mixture]
    else:
        named = [(cfg.data.task, list(cfg.rewards))]
    return {name: [as_term(t) for t in (own or defaults[name])] for name, own in named}


class Scorer:
    """Stage 3: scores rollouts with each task's terms; `correct` gives the correctness verdicts only (eval)."""

    def __init__(self, terms: Dict[str, Sequence[Any]]):
        self.terms = {task: [as_term(t) for t in ts] for task, ts in terms.items()}
        unknown = [t for t in self.terms if not self.terms[t]]
        if unknown:
            raise ValueError(f"task '{unknown[0]}' has no reward terms")

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
        """The scored rollout: total [N], {term: [N]} (0.0 where a term does not apply), counters summed over
        tasks, and `correct` [N]. `step` reaches the terms that take it (e.g. a warm-up)."""
        N = len(rollout)
        total, per_term, counts, correct = [0.0] * N, {}, {}, [0.0] * N
        for task, prompts in self._parts(rollout).items():
            terms = self.terms[task]
            t, pt, c = compute_rewards(rollout.select_groups(prompts), terms, step=step)
            where = rollout.rows_of(prompts)  # [n] completion index in the full rollout
            judge = pt[correctness_term(terms).name]
            for k, i in enumerate(where):
                total[i] = t[k]
                correct[i] = 1.0 if judge[k] > 0 else 0.0
            for name, scores in pt.items():
                column = per_term.setdefault(name, [0.0] * N)
                for k, i in enumerate(where):
                    column[i] = scores[k]
            for key, v in c.items():
                counts[key] = counts.get(key, 0) + v
        return ScoredRollout(rollout, total, per_term, counts, correct)

    def correct(self, rollout: Rollout) -> List[bool]:
        """[N] whether each completion's correctness term scores > 0 (only that term runs)."""
        out: List[Optional[bool]] = [None] * len(rollout)
        for task, prompts in self._parts(rollout).items():
            term = correctness_term(self.terms[task])
            part = rollout.select_groups(prompts)
            _, scores, _ = compute_rewards(part, [term])
            for k, i in enumerate(rollout.rows_of(prompts)):
                out[i] = scores[term.name][k] > 0
        return out
