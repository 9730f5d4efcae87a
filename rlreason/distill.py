"""On-policy distillation: a frozen teacher's per-token log-probs on the policy's own samples (GKD, Agarwal et
al., arXiv 2306.13649, with the reverse KL; its 2025 use for reasoners grades every sampled token this way).

For response token y_t of a sample drawn from the student, the term added to its advantage is

    coef * (log pi_teacher(y_t | y_<t) - log pi_student(y_t | y_<t))

i.e. minus coef times the single-sample estimate of the reverse KL(pi_student || pi_teacher) at that token.
`log pi_student` is the sampling log-prob (`TrainBatch.old_logp`: the engine's, or the trainer's when
`algo.ppo_epochs`/`mini_batches` recompute it), so no gradient flows through the term: the policy loss
treats it as any advantage. Both log-probs are at `rollout.temperature`. A sequence advantage [N] is repeated
over its tokens first; padding, prompt tokens and samples marked not valid get exactly 0.

`algo.teacher.only` sets the reward's advantage to 0, so the teacher's term is the whole signal (pure
on-policy distillation); otherwise the term is added to the verifiable reward's advantage.
The teacher itself is loaded by `rlreason.build.teacher` (only when `algo.teacher.path` is set), in the
policy's precision and with the policy's tokenizer (`check_vocab`); it is never trained or checkpointed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from rlreason.errors import ModelLoadError


@dataclass
class Teacher:
    """The frozen teacher model and how its term enters the advantage (`algo.teacher`)."""

    model: torch.nn.Module
    coef: float
    only: bool

    def add(self, advantages: torch.Tensor, student_logp: torch.Tensor, teacher_logp: torch.Tensor,
            mask: torch.Tensor, valid: Optional[torch.Tensor], tokens: float) -> Tuple[torch.Tensor, Dict[str, float]]:
        """(advantages [N, T] with the term added, metrics as this rank's shares of the step's token means).

        `tokens`: the step's response tokens over every rank (the metrics' divisor)."""
        adv, term = distill_advantages(advantages, student_logp, teacher_logp, mask, self.coef, self.only, valid)
        live = mask * (valid[:, None].to(mask.dtype) if valid is not None else 1)
        reverse_kl = (student_logp - teacher_logp) * live
        return adv, {"distill/reverse_kl": float(reverse_kl.sum() / tokens), "distill/term_mean": float(term.sum() / tokens)}


def distill_advantages(advantages: torch.Tensor, student_logp: torch.Tensor, teacher_logp: torch.Tensor,
                       mask: torch.Tensor, coef: float, only: bool = False, valid: Optional[torch.Tensor] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(advantages [N, T] + the teacher's term, the term [N, T]); see the module docstring.

    `advantages` [N] or [N, T]; `student_logp`, `teacher_logp`, `mask` [N, T]; `valid` [N] bool or None.
    Example: A = [1.0] (one sample), student log-probs [-1.0, -2.0, 0], teacher [-0.5, -3.0, -9.0], mask [1, 1, 0],
    coef 0.5: term = 0.5 * [0.5, -1.0, 0] = [0.25, -0.5, 0] -> [1.25, 0.5, 0]; with only=True -> [0.25, -0.5, 0].
    """
    m = mask.to(student_logp.dtype)
    if valid is not None:
        m = m * valid[:, None].to(m.dtype)
    term = coef * (teacher_logp.detach() - student_logp.detach()) * m  # [N, T]
    base = advantages[:, None].expand_as(m) if advantages.dim() == 1 else advantages  # [N] -> [N, T]
    base = torch.zeros_like(m) if only else base.to(m.dtype) * m
    return base + term, term


def check_vocab(teacher_tok, student_tok, path: str) -> None:
    """Refuse a teacher whose tokenizer maps tokens to other ids than the policy's: its log-probs would grade
    other tokens than the ones sampled."""
    t, s = teacher_tok.get_vocab(), student_tok.get_vocab()
    if t != s:
        differ = sum(1 for k, v in s.items() if t.get(k) != v)
        raise ModelLoadError(f"algo.teacher.path: '{path}' has another vocabulary than model.path ({len(t)} vs "
                             f"{len(s)} tokens, {differ} of the policy's tokens differ); a teacher needs the "
                             f"policy's tokenizer")
