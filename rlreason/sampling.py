"""Which training prompts a step uses (`data.sampling`): a registry of samplers over a task's stream.

A sampler is built as `SAMPLERS.get(name)(stream, data_cfg, seed)` and offers
- `next(n) -> List[Sample]`: the next n prompts;
- `update(samples, success)`: each prompt's fraction of correct completions this step (for statistics);
- `state_dict()` / `load_state_dict(state)`: exact resume (the stream is rebuilt from the seed).
"""
from __future__ import annotations

import itertools
from typing import Dict, Iterator, List, Optional

import torch

from rlreason.registry import Registry
from rlreason.types import Sample

SAMPLERS = Registry("prompt sampler")


@SAMPLERS.register("uniform")
class UniformSampler:
    """The task's stream in order (the task decides the order, e.g. seeded random problems)."""

    def __init__(self, stream: Iterator[Sample], cfg=None, seed: int = 0):
        self.stream, self.consumed = stream, 0

    def next(self, n: int) -> List[Sample]:
        out = list(itertools.islice(self.stream, n))
        self.consumed += len(out)
        if len(out) < n:
            raise RuntimeError(f"the task's training split ran out after {self.consumed} prompts")
        return out

    def update(self, samples: List[Sample], success: List[float]) -> None:
        pass

    def state_dict(self) -> Dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: Dict) -> None:
        for _ in itertools.islice(self.stream, state["consumed"]):  # replay the deterministic stream
            pass
        self.consumed = state["consumed"]


class _PoolSampler:
    """A finite pool: the first `data.pool_size` prompts of the stream, with per-prompt success statistics."""

    def __init__(self, stream: Iterator[Sample], cfg, seed: int = 0):
        self.pool = list(itertools.islice(stream, cfg.pool_size))
        if not self.pool:
            raise RuntimeError("the task's training split is empty")
        self.attempts = torch.zeros(len(self.pool))  # [pool] completions scored
        self.successes = torch.zeros(len(self.pool))  # [pool] of which correct
        self.index = {id(s): i for i, s in enumerate(self.pool)}
        self.gen = torch.Generator().manual_seed(seed)

    def success_rate(self) -> torch.Tensor:
        """[pool] tracked success rate; 0 for prompts never tried."""
        return self.successes / self.attempts.clamp(min=1)

    def update(self, samples: List[Sample], success: List[float]) -> None:
        for s, frac in zip(samples, success):
            i = self.index[id(s)] if id(s) in self.index else self.pool.index(s)  # a copy: restored in-flight state
            self.attempts[i] += 1
            self.successes[i] += float(frac)

    def state_dict(self) -> Dict:
        return {"attempts": self.attempts.clone(), "successes": self.successes.clone(), "gen": self.gen.get_state()}

    def load_state_dict(self, state: Dict) -> None:
        self.attempts, self.successes = state["attempts"].clone(), state["successes"].clone()
        self.gen.set_state(state["gen"])


@SAMPLERS.register("prioritized")
class PrioritizedSampler(_PoolSampler):
    """Kimi k1.5 prioritized sampling (arXiv 2501.12599, 'sampling strategies'): draw prompt i with probability ∝ 1 - s_i,
    s_i its tracked success rate (running fraction of correct completions; 0 before its first try).

    Drawn without replacement within a step; when every prompt is solved (all weights 0) it draws uniformly.
    Example: s = [0, .5, 1] -> probabilities [2/3, 1/3, 0].
    """

    def probabilities(self) -> torch.Tensor:
        w = 1.0 - self.success_rate()  # [pool]
        return w / w.sum() if w.sum() > 0 else torch.full_like(w, 1.0 / len(w))

    def next(self, n: int) -> List[Sample]:
        p = self.probabilities()
        live = int((p > 0).sum())
        if live >= n:
            picks = torch.multinomial(p, n, replacement=False, generator=self.gen)
        else:  # fewer unsolved prompts than needed: all of them, then the rest uniformly from the solved
            rest = torch.multinomial((p == 0).float(), n - live, replacement=n - live > len(p) - live, generator=self.gen)
            picks = torch.cat([p.nonzero().flatten(), rest])
        return [self.pool[i] for i in picks.tolist()]


@SAMPLERS.register("curriculum")
class CurriculumSampler(_PoolSampler):
    """Curriculum sampling (Kimi k1.5, arXiv 2501.12599, 'sampling strategies'): the pool sorted by
    `sample.meta['difficulty']` (easy first, ties in stream order), served in order and repeated when exhausted.

    Example: difficulties [3, 1, 2] -> prompts 1, 2, 0, 1, 2, 0, ...
    """

    def __init__(self, stream: Iterator[Sample], cfg, seed: int = 0):
        super().__init__(stream, cfg, seed)
        missing = [s.id for s in self.pool if "difficulty" not in s.meta]
        if missing:
            raise RuntimeError(f"data.sampling=curriculum needs meta['difficulty'] on every sample; "
                               f"{len(missing)} lack it (first: {missing[0]!r})")
        self.order = sorted(range(len(self.pool)), key=lambda i: self.pool[i].meta["difficulty"])
        self.position = 0

    def next(self, n: int) -> List[Sample]:
        out = [self.pool[self.order[(self.position + k) % len(self.order)]] for k in range(n)]
        self.position += n
        return out

    def state_dict(self) -> Dict:
        return {**super().state_dict(), "position": self.position}

    def load_state_dict(self, state: Dict) -> None:
        super().load_state_dict(state)
        self.position = state["position"]


def informative_groups(total: List[float], group_size: int, valid: Optional[List[bool]] = None) -> List[int]:
    """Indices of the groups whose rewards are not all equal (DAPO dynamic sampling keeps only these); with
    `valid` [N], only the valid samples' rewards count (fewer than two of them: not informative).

    Example: rewards [1,1 | 0,1 | 0,0] with G=2 -> [1]; [0,1] with valid [True, False] -> [].
    """
    valid = valid or [True] * len(total)
    groups = [[r for r, ok in zip(total[i : i + group_size], valid[i : i + group_size]) if ok]
              for i in range(0, len(total), group_size)]
    return [g for g, rs in enumerate(groups) if len(rs) > 1 and max(rs) - min(rs) > 1e-12]
