"""The carried rollout sources under torchrun (WORLD_SIZE > 1): decisions every rank takes together, and
per-rank in-flight state in a checkpoint. Every helper is the identity, or nearly, in one process.

- `any_rank(flag)`, `most(n)`: a flag or a count agreed over ranks (all-reduced max), so that every rank runs
  the same number of generation rounds and draws the same prompts from the (identical) sampler;
- `reduce_info(info, same)`: a source's rollout/* record over ranks (counts summed, except the keys in
  `same` that every rank holds alike, which are averaged);
- `RankStates(source)`: the source as a checkpoint sees it: `state_dict()` gathers every rank's state
  (collective), `load_state_dict()` gives each rank its own back and refuses another world size.

Example, 2 ranks, partial rollouts: rank 0 has 2 groups ready of the 2 it trains, rank 1 has 1: `any_rank`
says "short" on both, so both run one more round (rank 0's round continues its other groups in flight).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable

from rlreason import distributed
from rlreason.errors import ConfigError


def any_rank(flag: bool) -> bool:
    """Whether `flag` holds on some rank (every rank gets the same answer)."""
    return distributed.all_reduce(float(flag), "max") > 0


def most(n: int) -> int:
    """The largest `n` over ranks."""
    return int(distributed.all_reduce(float(n), "max"))


def reduce_info(info: Dict[str, float], same: Iterable[str] = ()) -> Dict[str, float]:
    """`info` summed over ranks, but the keys in `same` (alike on every rank) averaged."""
    same = set(same)
    return distributed.reduce_metrics(info, summed=[k for k in info if k not in same])


class RankStates:
    """A carried source (`stateful`, with a `key`: its config option) whose state is each rank's own.

    One process: the source's own `state_dict` (the single-process checkpoint format). Under torchrun:
    {"world": W, "ranks": [every rank's state]}, written by rank 0; each rank restores its own part.
    A checkpoint of W ranks resumes only with W ranks (the groups in flight are each rank's, sampled with
    its own random stream): another world size is refused with one line naming the option.
    """

    def __init__(self, source):
        self.source = source

    def state_dict(self) -> Dict[str, Any]:
        state = self.source.state_dict()
        if distributed.world() == 1:
            return state
        return {"world": distributed.world(), "ranks": [s[0] for s in distributed.all_gather_list([state])]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        saved = state.get("world", 1) if isinstance(state, dict) else 1
        if saved != distributed.world():
            raise ConfigError(f"{self.source.key}: the checkpoint holds the in-flight rollouts of WORLD_SIZE={saved} "
                              f"rank(s); resume it with {saved} (the carried samples cannot be resharded)")
        self.source.load_state_dict(state["ranks"][distributed.rank()] if saved > 1 else state)
