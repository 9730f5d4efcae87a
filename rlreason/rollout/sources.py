"""Where a step's rollout comes from (stages 1-2 of the loop): `make_source(rollout_cfg)`.

- `FreshRollouts` (the default): every step draws `prompts_per_step` prompts and generates them to the end
  with the current weights (synchronous on-policy RL).
- `PartialRollouts` (`rollout.partial_tokens` > 0, `rlreason/rollout/partial.py`): groups generated over
  several steps in token-budgeted rounds, carried in flight between steps.
- `OverlapRollouts` (`rollout.max_staleness` > 0, `rlreason/rollout/overlap.py`): each step's rollout
  generated s steps ahead by older weights, on a background thread while the trainer updates.

A source offers `next(sampler, engine, rollout_cfg, version) -> (every rank's prompts, this rank's Rollout)`,
`metrics()` (its rollout/* record of the step, over every rank), `state_dict()`/`load_state_dict()` and
`stateful` (whether a checkpoint keeps that state: something carried between steps; `key` then names its
option). Under torchrun every source draws the same prompts on every rank and generates its
shard; the carried ones agree on their rounds and draws by all-reduce and checkpoint every rank's state
(`rlreason/rollout/shards.py`). The first element is what the trainer feeds the sampler with the gathered
scores: every rank's prompts, in `distributed.gather` order.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from rlreason import distributed
from rlreason.types import Rollout, Sample

from .overlap import OverlapRollouts
from .partial import PartialRollouts


class FreshRollouts:
    """Synchronous rollouts: each step's prompts, generated to the end by the weights of the step."""

    stateful = False

    def next(self, sampler, engine, r, version: int) -> Tuple[List[Sample], Rollout]:
        everyone = sampler.next(r.prompts_per_step)  # 1 every rank draws the same prompts ...
        samples = distributed.shard_prompts(everyone)  # [DIST] ... and keeps its shard
        return everyone, engine.generate(samples, r.group_size, r.temperature, r.top_p, r.max_new_tokens)  # 2

    def metrics(self) -> Dict[str, float]:
        return {}

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


def make_source(r, last_step: int = 0, seed: int = 0):
    """The rollout source of `rollout` config `r`: partial rollouts when `r.partial_tokens` > 0, rollouts
    generated ahead when `r.max_staleness` > 0 (up to step `last_step`, seeded by `seed`), else fresh ones."""
    if r.partial_tokens:
        return PartialRollouts(r.partial_tokens, r.partial_max_steps, r.partial_groups)
    if r.max_staleness:
        return OverlapRollouts(r.max_staleness, last_step, seed)
    return FreshRollouts()
