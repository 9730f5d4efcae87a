"""Partial rollouts (Kimi k1.5, arXiv 2501.12599 §2.2): no step waits for its longest answer.

`rollout.partial_tokens` B > 0: a pool of prompt groups is in flight across steps. Each generation round
gives every unfinished sample at most B new tokens (`engine.extend`: the first round of a step prefills its
prompt and tokens so far again under the step's weights; later rounds of the same step continue from the KV
cache the sample had). A group whose G samples all ended (EOS, or `max_new_tokens`) is ready;
rounds repeat, the pool topped up with new prompts to `rollout.partial_groups` groups in flight before each
(default `prompts_per_step`), until `prompts_per_step` groups are ready; those are trained, oldest first,
and the rest wait for the next step. A pool larger than `prompts_per_step` finishes groups in fewer rounds
(a round's rows cost little more than fewer on a GPU), at the price of older tokens.
Every token keeps the log-prob it was sampled with and the policy version that sampled it
(`Completion.versions`): what the off-policy correction compares with the trainer's log-probs.

The bound, `rollout.partial_max_steps` M: no trained token is more than M policy versions behind the weights
it trains (`rollout/staleness_max` <= M). A group still unfinished after M steps of generation ends as
truncated at the start of the next step (finish_reason "length"; `algo.mask_truncated` keeps it out of the
loss) and is trained then, the oldest groups first; a finished group that would pass the bound while it
waits (more groups due at once than `prompts_per_step`) is dropped (`rollout/dropped_groups`).

Under torchrun (WORLD_SIZE W > 1) each rank keeps its own pool of `partial_groups` / W groups and trains
exactly `prompts_per_step` / W of them per step (the update's collectives need equal work). The ranks agree
by all-reduce (`rlreason/rollout/shards.py`): rounds repeat while some rank is short of ready groups (every
rank runs every round; a rank already served continues its groups in flight and asks for none), and the
top-up draws W times the largest need of a short rank from the sampler, every rank the same prompts, each
keeping its shard (`shard_prompts`; a shard larger than the rank's room waits in `backlog` for room), so the
sampler stays identical on every rank. Equal rounds also keep vLLM's data-parallel engines in lockstep
(every rank calls `extend` as often; a served rank may call it with no rows). The prompts
returned are every rank's trained ones, gathered in the order of the trainer's gathered scores.

Example, P=2, G=1, B=2, max_new_tokens=5. Step 1 (version 0) starts A (a 5-token answer) and B (2 tokens):
round 1 ends B and gives A 2 tokens; C starts, round 2 ends C and gives A 2 more; B and C are trained. Step 2
(version 1) starts D; one round ends A (its last token under version 1) and D: A is trained with versions
[0, 0, 0, 0, 1], staleness [1, 1, 1, 1, 0], and no step waited for A.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

from rlreason import distributed
from rlreason.tasks.templates import prompt_ids
from rlreason.types import Completion, Rollout, Sample

from . import shards

STOP, LENGTH = "stop", "length"


@dataclass
class Row:
    """One sample's completion so far."""

    token_ids: List[int] = field(default_factory=list)  # [L] sampled ids, EOS included when sampled
    logprobs: List[float] = field(default_factory=list)  # [L] each under the policy that sampled it
    versions: List[int] = field(default_factory=list)  # [L] that policy's version (updates behind it)
    finish_reason: str = ""  # "" while unfinished, then "stop" | "length"


@dataclass
class Group:
    """One prompt's G samples, generated over one or more steps."""

    sample: Sample
    prompt_ids: List[int]  # [Lp]
    rows: List[Row]  # [G]
    born: int  # the policy version that sampled its first tokens
    index: int  # birth order over the run (ties of `born` are trained in this order)

    @property
    def finished(self) -> bool:
        return all(r.finish_reason for r in self.rows)

    def truncate(self) -> None:
        """End every unfinished sample as it stands (the partial_max_steps bound)."""
        for r in self.rows:
            r.finish_reason = r.finish_reason or LENGTH


class PartialRollouts:
    """The carried pool of groups in flight and the queue of finished ones (checkpointed: `state_dict`)."""

    stateful, key = True, "rollout.partial_tokens"

    def __init__(self, budget: int, max_steps: int, groups: int = 0):
        self.budget, self.max_steps = budget, max_steps  # rollout.partial_tokens, rollout.partial_max_steps
        self.groups = groups  # rollout.partial_groups: groups in flight in every round (0 = prompts_per_step)
        self.inflight: List[Group] = []  # started, some sample unfinished
        self.ready: List[Group] = []  # finished (or truncated), not trained yet
        self.backlog: List[Sample] = []  # drawn, not started yet (torchrun: a rank drew more than it had room for)
        self.born = 0  # groups started so far on this rank (the next birth index)
        self.info: Dict[str, float] = {}  # the last step's rollout/* metrics

    def next(self, sampler, engine, r, version: int) -> Tuple[List[Sample], Rollout]:
        """(every rank's prompts trained now, this rank's rollout): `r.prompts_per_step` / WORLD_SIZE finished
        groups per rank, oldest first. `version`: the policy version the engine samples with now (the number
        of updates so far). Under torchrun the round and draw decisions are agreed over ranks (`shards`)."""
        W, M = distributed.world(), self.max_steps
        P, size = r.prompts_per_step // W, (self.groups or r.prompts_per_step) // W  # this rank's share
        started, rounds, tokens = 0, 0, 0
        expired = [g for g in self.inflight if g.born <= version - M]  # generated during M steps already
        for g in expired:
            g.truncate()
        self._settle()
        while shards.any_rank(len(self.ready) < P):  # [DIST] every rank runs a round while one is short
            short = size - len(self.inflight) - len(self.backlog) if len(self.ready) < P else 0  # served: no more
            need = shards.most(short)  # top up the pools in flight
            if need > 0:  # [DIST] every rank draws the same prompts and keeps its shard
                self.backlog += distributed.shard_prompts(sampler.next(need * W))
            room = size - len(self.inflight)
            fresh, self.backlog = self.backlog[:room], self.backlog[room:]
            self.inflight += [self._start(s, engine.tok, r.group_size, version) for s in fresh]
            started += len(fresh)
            tokens += self._round(engine, r, version)
            rounds += 1
            self._settle()
        self.ready.sort(key=lambda g: (g.born, g.index))
        trained, waiting = self.ready[:P], self.ready[P:]
        self.ready = [g for g in waiting if g.born > version - M]  # the rest would be over the bound next step
        self.info = shards.reduce_info({  # [DIST] counts summed over ranks
            "rollout/inflight_groups": float(len(self.inflight)), "rollout/ready_groups": float(len(self.ready)),
            "rollout/started_groups": float(started), "rollout/partial_rounds": float(rounds),
            "rollout/new_tokens": float(tokens), "rollout/expired_groups": float(len(expired)),
            "rollout/dropped_groups": float(len(waiting) - len(self.ready))}, same=["rollout/partial_rounds"])
        samples = [g.sample for g in trained]
        completions = [self._completion(row, engine) for g in trained for row in g.rows]
        everyone = distributed.gather(samples)  # [DIST] in the order of the trainer's gathered scores
        return everyone, Rollout(samples, completions, r.group_size, [g.prompt_ids for g in trained])

    def metrics(self) -> Dict[str, float]:
        """The last step's rollout/*: groups carried in flight and ready, groups started, rounds, tokens
        generated, groups truncated by the bound and dropped by it."""
        return dict(self.info)

    def _start(self, sample: Sample, tok, G: int, version: int) -> Group:
        self.born += 1
        return Group(sample, prompt_ids(sample, tok), [Row() for _ in range(G)], version, self.born - 1)

    def _round(self, engine, r, version: int) -> int:
        """One budgeted round over every unfinished sample in flight; returns the tokens it generated."""
        todo = [(g, j, row) for g in self.inflight for j, row in enumerate(g.rows) if not row.finish_reason]
        contexts = [g.prompt_ids + row.token_ids for g, _, row in todo]
        budgets = [min(self.budget, r.max_new_tokens - len(row.token_ids)) for _, _, row in todo]
        keys = [(g.index, j) for g, j, _ in todo]  # within a step (same version) the engine may keep their caches
        pieces = engine.extend(contexts, budgets, r.temperature, r.top_p, keys=keys, tag=version)
        todo = [row for _, _, row in todo]
        for row, (ids, logps, why) in zip(todo, pieces):
            row.token_ids += ids
            row.logprobs += logps
            row.versions += [version] * len(ids)
            if why == STOP or len(row.token_ids) >= r.max_new_tokens:
                row.finish_reason = STOP if why == STOP else LENGTH
        return sum(len(p[0]) for p in pieces)

    def _settle(self) -> None:
        """Move the finished groups from the pool to the ready queue (in birth order)."""
        self.ready += [g for g in self.inflight if g.finished]
        self.inflight = [g for g in self.inflight if not g.finished]

    @staticmethod
    def _completion(row: Row, engine) -> Completion:
        """The engines' rules: an EOS id ends token_ids and is left out of the text."""
        eos = bool(row.token_ids) and row.token_ids[-1] in engine.stop_ids
        text = engine.tok.decode(row.token_ids[:-1] if eos else row.token_ids, skip_special_tokens=True)
        return Completion(text=text, token_ids=list(row.token_ids), logprobs=list(row.logprobs),
                          finish_reason=row.finish_reason, versions=list(row.versions))

    def state_dict(self) -> Dict[str, Any]:
        """Everything in flight and ready (exact resume: the same groups continue from the same tokens)."""
        return {"inflight": self.inflight, "ready": self.ready, "born": self.born, "backlog": self.backlog}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.inflight, self.ready, self.born = list(state["inflight"]), list(state["ready"]), state["born"]
        self.backlog = list(state.get("backlog", []))  # checkpoints before torchrun support have none
