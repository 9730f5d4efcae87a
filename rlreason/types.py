"""Typed data passed between the stages of one RL step (DESIGN.md, "Data that flows").

N = prompts x group size G. Completions of one prompt are contiguous, so
completion i belongs to prompt i // G.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch


@dataclass
class Sample:
    """One problem from a task.

    `prompt` is raw text given to the model as is; `messages` (chat turns) is
    rendered with the tokenizer's chat template instead. Exactly one is set.
    `answer` is whatever the task's reward terms need (a string for math).
    """

    id: str
    task: str
    answer: Any
    prompt: Optional[str] = None
    messages: Optional[List[Dict[str, str]]] = None
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError(f"sample {self.id!r}: set exactly one of prompt / messages")


@dataclass
class ToolCall:
    """One tool call of a tool-integrated rollout (`rlreason/rollout/tools.py`)."""

    code: str  # the code block the model wrote
    output: str  # what the tool printed (before truncation to rollout.tool_output_chars)
    status: str  # "ok" | "error" (an exception, a non-zero exit, a limit) | "timeout"
    seconds: float = 0.0  # its share of the wall time of the batch of calls it ran in
    refused: bool = False  # not run: its generate() call's tool time (rollout.tool_step_budget_s) was spent


@dataclass
class Completion:
    """One sampled continuation from the rollout engine.

    With tools, `token_ids` are the sampled ids with each tool's output ids spliced in where the call was
    made (tokenised once, never re-tokenised); `tool_mask` marks those positions with 1: they were not
    sampled, so their `logprobs` entry is a placeholder 0.0 and they never enter a loss."""

    text: str
    token_ids: List[int]  # [L] generated ids, EOS included when it was sampled
    logprobs: List[float]  # [L] engine log-probs of the sampled ids (at the sampling temperature); 0.0 on tool tokens
    finish_reason: str  # "stop" (EOS or stop string) | "length" (hit max_new_tokens)
    tool_mask: List[int] = field(default_factory=list)  # [L] 1 on tool-output tokens; empty = every token sampled
    tool_calls: List[ToolCall] = field(default_factory=list)  # the calls made, in order
    versions: List[int] = field(default_factory=list)  # [L] policy version that sampled each token (the number of
    # updates behind it; partial rollouts, `rlreason/rollout/partial.py`); empty = all by the step's current policy

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @property
    def policy_mask(self) -> List[int]:
        """[L] 1 on the tokens the policy sampled, 0 on tool output."""
        return [1 - m for m in self.tool_mask] if self.tool_mask else [1] * len(self.token_ids)


@dataclass
class Rollout:
    """G completions for each of len(samples) prompts: completion i answers samples[i // G]."""

    samples: List[Sample]
    completions: List[Completion]
    group_size: int
    prompt_ids: List[List[int]] = field(default_factory=list)  # [P][Lp] tokenised prompts

    def __post_init__(self) -> None:
        if len(self.completions) != len(self.samples) * self.group_size:
            raise ValueError(
                f"rollout has {len(self.completions)} completions for {len(self.samples)} prompts x G={self.group_size}"
            )

    def sample_of(self, i: int) -> Sample:
        return self.samples[i // self.group_size]

    def rows_of(self, groups: List[int]) -> List[int]:
        """The completion indices of prompts `groups`, in order. Example: G=2, groups [1, 0] -> [2, 3, 0, 1]."""
        return [g * self.group_size + j for g in groups for j in range(self.group_size)]

    def select_groups(self, groups: List[int]) -> "Rollout":
        """The rollout restricted to prompts `groups` (their G completions each, in the given order)."""
        G = self.group_size
        return Rollout(
            samples=[self.samples[g] for g in groups],
            completions=[c for g in groups for c in self.completions[g * G : (g + 1) * G]],
            group_size=G,
            prompt_ids=[self.prompt_ids[g] for g in groups] if self.prompt_ids else [],
        )

    @staticmethod
    def concat(parts: List["Rollout"]) -> "Rollout":
        """Several rollouts with the same group size as one (prompts in order)."""
        return Rollout(
            samples=[s for p in parts for s in p.samples],
            completions=[c for p in parts for c in p.completions],
            group_size=parts[0].group_size,
            prompt_ids=[ids for p in parts for ids in p.prompt_ids],
        )

    def __len__(self) -> int:
        return len(self.completions)


OK, WRONG, TIMEOUT, ERROR = "ok", "wrong", "timeout", "error"
OUTCOMES = (OK, WRONG, TIMEOUT, ERROR)  # what one reward term's check gave for one completion
UNCHECKED = (TIMEOUT, ERROR)  # the check could not be run to the end: no evidence either way


@dataclass
class RewardOutput:
    """What one reward term returns: a score per completion, counters for logging, and each check's outcome.

    `outcomes[i]` is one of OUTCOMES: "ok" / "wrong" when the check ran (the score is its verdict),
    "timeout" when the checker itself ran out of time, "error" when the check could not be run (e.g. the
    sandbox failed to start). A candidate program that runs past its own time limit has failed its test:
    that is "wrong", not "timeout". Left empty, outcomes are "ok" where the score is > 0, else "wrong".
    """

    scores: List[float]  # [N]
    counts: Dict[str, int] = field(default_factory=dict)  # e.g. {"timeouts": 1}; logged as reward/<term>/<key>
    outcomes: List[str] = field(default_factory=list)  # [N] one of OUTCOMES, or empty (derived from scores)

    def outcome_list(self) -> List[str]:
        """[N] the outcomes, derived from the scores where the term gave none."""
        if not self.outcomes:
            return [OK if s > 0 else WRONG for s in self.scores]
        bad = [o for o in self.outcomes if o not in OUTCOMES]
        if bad or len(self.outcomes) != len(self.scores):
            raise ValueError(f"reward outcomes must be {len(self.scores)} of {', '.join(OUTCOMES)}; got "
                             f"{len(self.outcomes)}{' including ' + repr(bad[0]) if bad else ''}")
        return list(self.outcomes)


@dataclass
class ScoredRollout:
    """A rollout with its rewards (stage 3's output)."""

    rollout: Rollout
    total: List[float]  # [N] weighted sum of the terms
    per_term: Dict[str, List[float]]  # {term: [N] raw scores}
    counts: Dict[str, int] = field(default_factory=dict)  # {"term/key": n}, e.g. timeouts
    correct: List[float] = field(default_factory=list)  # [N] 1.0 where the sample's correctness term scored > 0
    outcomes: Dict[str, List[str]] = field(default_factory=dict)  # {term: [N] one of OUTCOMES}
    valid: List[bool] = field(default_factory=list)  # [N] False: trained on as if absent (a check could not run)

    def __post_init__(self) -> None:
        if not self.valid:
            self.valid = [True] * len(self.total)

    def group_accuracy(self) -> List[float]:
        """[P] fraction of each prompt's G completions that are correct."""
        G = self.rollout.group_size
        return [sum(x > 0 for x in self.correct[i:i + G]) / G for i in range(0, len(self.correct), G)]

    def select_groups(self, groups: List[int]) -> "ScoredRollout":
        rows = self.rollout.rows_of(groups)
        return ScoredRollout(self.rollout.select_groups(groups), [self.total[i] for i in rows],
                             {k: [v[i] for i in rows] for k, v in self.per_term.items()}, dict(self.counts),
                             [self.correct[i] for i in rows], {k: [v[i] for i in rows] for k, v in self.outcomes.items()},
                             [self.valid[i] for i in rows])

    @staticmethod
    def concat(parts: List["ScoredRollout"]) -> "ScoredRollout":
        counts: Dict[str, int] = {}
        for p in parts:
            for k, v in p.counts.items():
                counts[k] = counts.get(k, 0) + v
        return ScoredRollout(Rollout.concat([p.rollout for p in parts]), [x for p in parts for x in p.total],
                             {k: [x for p in parts for x in p.per_term[k]] for k in parts[0].per_term}, counts,
                             [x for p in parts for x in p.correct],
                             {k: [x for p in parts for x in p.outcomes[k]] for k in parts[0].outcomes},
                             [x for p in parts for x in p.valid])


TOKEN, ROW = "token", "row"  # field roles: [N, T] one value per token position, [N, ...] one per sequence


def _role(role: str, default: Any = dataclasses.MISSING) -> Any:
    return field(default=default, metadata={"role": role})


@dataclass
class TrainBatch:
    """Right-padded prompt+completion tokens for the policy update; every field declares its role
    (`TOKEN`: [N, T], cut to a micro-batch's width; `ROW`: one entry per sequence), which `select` reads."""

    input_ids: torch.Tensor = _role(TOKEN)  # [N, T] long
    attention_mask: torch.Tensor = _role(TOKEN)  # [N, T] 1 for real tokens
    loss_mask: torch.Tensor = _role(TOKEN)  # [N, T] 1 for completion tokens that enter the loss (label positions)
    old_logp: torch.Tensor = _role(TOKEN)  # [N, T] log-prob of the token at t under the sampling policy (0 where masked)
    advantages: Optional[torch.Tensor] = _role(TOKEN)  # [N, T] per token (a sequence's value repeated; set in stage 5)
    ref_logp: Optional[torch.Tensor] = _role(TOKEN, None)  # [N, T] under the frozen reference; None when KL is off
    teacher_logp: Optional[torch.Tensor] = _role(TOKEN, None)  # [N, T] under the distillation teacher; None without
    versions: Optional[torch.Tensor] = _role(TOKEN, None)  # [N, T] long: policy version that sampled each completion
    # token (-1 elsewhere); None when the completions carry none (every token sampled by the current policy)

    def __post_init__(self) -> None:
        if self.advantages is not None:
            self.set_advantages(self.advantages)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def set_advantages(self, adv: torch.Tensor) -> None:
        """Advantages [N] (one per sequence, repeated over its tokens) or [N, T] (per token)."""
        self.advantages = adv[:, None].expand(self.input_ids.shape) if adv.dim() == 1 else adv

    def select(self, idx: torch.Tensor) -> "TrainBatch":
        """Rows `idx` (a micro-batch), token fields trimmed to their longest sequence."""
        T = int(self.attention_mask[idx].sum(-1).max())

        def cut(f: dataclasses.Field) -> Optional[torch.Tensor]:
            x = getattr(self, f.name)
            return None if x is None else x[idx, :T] if f.metadata["role"] == TOKEN else x[idx]

        return TrainBatch(**{f.name: cut(f) for f in dataclasses.fields(self)})
