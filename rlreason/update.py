"""Stage 6 of the loop: the policy (and critic) updates over one rollout, micro-batched.

A rollout of N sequences is used for `ppo_epochs` passes; each pass is split into `mini_batches`
optimizer steps (rows shuffled when there is more than one), each step into micro-batches of
`train.micro_batch_size` rows whose gradients accumulate; with a token budget (`train.micro_batch_tokens`)
the rows are taken longest first and a micro-batch also holds at most that many padded tokens, so short
sequences are not padded to the longest one of the step. Loss normalisers (`BatchTotals`) are taken once
per optimizer step, so the gradient does not depend on the micro-batch split.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch

from rlreason import distributed
from rlreason.algos import KL_ESTIMATORS, LOSS_AGGS, LOSSES, BatchTotals
from rlreason.algos.entropy_gate import top_entropy_gates
from rlreason.algos.offpolicy import importance_weights
from rlreason.critic import value_loss
from rlreason.policy import checkpointed_layers, token_logprobs
from rlreason.types import TrainBatch

Plan = List[List[torch.Tensor]]  # optimizer steps -> micro-batches -> row indices


def micro_batches(rows: torch.Tensor, micro: int, lengths: Optional[torch.Tensor] = None,
                  budget: int = 0) -> List[torch.Tensor]:
    """Split `rows` into micro-batches of at most `micro` rows.

    With a token `budget` (and the rows' `lengths`): rows longest first, and each micro-batch also stays within
    `budget` padded tokens (its rows x its longest length); a row longer than the budget goes alone.
    """
    if budget <= 0 or lengths is None:
        return list(rows.split(micro))
    order = rows[torch.argsort(lengths[rows], descending=True, stable=True)]
    out: List[torch.Tensor] = []
    cur: List[int] = []
    longest = 0
    for r in order.tolist():
        if cur and (len(cur) >= micro or (len(cur) + 1) * longest > budget):
            out.append(torch.tensor(cur))
            cur = []
        if not cur:
            longest = int(lengths[r])
        cur.append(r)
    if cur:
        out.append(torch.tensor(cur))
    return out


def even_counts(steps: Plan) -> Plan:
    """[DIST] Every rank gets as many micro-batches in each optimizer step as the rank with the most.

    FSDP2 gathers the parameters at every micro-batch's forward and reduce-scatters at its backward, so ranks
    whose token budgets (`train.micro_batch_tokens`) cut their rows into different counts would wait on each
    other forever. A rank below the most splits its micro-batch with the most rows in two until it has as
    many: micro-batches only shrink, so the budget still holds (every rank has the same rows per optimizer
    step, so the most never exceeds them). One process: `steps` unchanged.
    """
    if not distributed.active():
        return steps
    most = distributed.all_reduce(torch.tensor([float(len(s)) for s in steps], dtype=torch.float64), "max")
    out: Plan = []
    for step, target in zip(steps, most.long().tolist()):
        step = list(step)
        while len(step) < target:
            i = max(range(len(step)), key=lambda j: len(step[j]))
            step[i:i + 1] = list(step[i].tensor_split(2))
        out.append(step)
    return out


def update_plan(n: int, epochs: int, mini_batches: int, micro: int, lengths: Optional[torch.Tensor] = None,
                budget: int = 0) -> Plan:
    """Row indices of every micro-batch of every optimizer step: epochs * mini_batches steps.

    With one mini-batch the rows keep their order (no randomness is used); `lengths` [n] and `budget` pack
    each step's micro-batches by token budget (`micro_batches`).
    """
    plan: Plan = []
    for _ in range(epochs):
        order = torch.randperm(n) if mini_batches > 1 else torch.arange(n)
        for rows in order.tensor_split(mini_batches):
            plan.append(micro_batches(rows, micro, lengths, budget))
    return plan


def plan_for(batch: TrainBatch, algo, train) -> Plan:
    """The update plan of `batch` under the config's algo (epochs, mini-batches) and train (micro-batch limits)."""
    return even_counts(update_plan(len(batch), algo.ppo_epochs, algo.mini_batches, train.micro_batch_size,
                                   batch.attention_mask.sum(-1), train.micro_batch_tokens))  # [DIST] FSDP2


def updates_per_rollout(algo) -> int:
    return algo.ppo_epochs * algo.mini_batches


@torch.no_grad()
def _forward_rows(fn, module, batch: TrainBatch, micro: int, budget: int) -> torch.Tensor:
    """fn(module, ids, attn) -> [n, T'] per micro-batch, gathered into [N, T] (0 past each row's micro-batch width)."""
    device = next(module.parameters()).device
    out = torch.zeros(batch.input_ids.shape)
    (rows,) = even_counts([micro_batches(torch.arange(len(batch)), micro, batch.attention_mask.sum(-1), budget)])
    for idx in rows:  # [DIST] as many forwards on every rank (FSDP2 gathers at each)
        mb = batch.select(idx)
        y = fn(module, mb.input_ids.to(device), mb.attention_mask.to(device))
        out[idx, : y.shape[1]] = y.float().cpu()
    return out


def forward_logprobs(model, batch: TrainBatch, temperature: float, micro: int, budget: int = 0) -> torch.Tensor:
    """log-probs [N, T] of the batch's tokens under `model` (for old/ref log-probs)."""
    return _forward_rows(lambda m, ids, attn: token_logprobs(m, ids, attn, temperature)[0], model, batch, micro, budget)


def forward_values(critic, batch: TrainBatch, micro: int, budget: int = 0) -> torch.Tensor:
    """Critic values [N, T] (0 outside the loss mask)."""
    return _forward_rows(lambda m, ids, attn: m(ids, attn), critic, batch, micro, budget) * batch.loss_mask


class _Stats:
    """Metric sums over optimizer steps (averaged at the end) plus once-per-rollout values."""

    def __init__(self):
        self.sums: Dict[str, float] = {}
        self.once: Dict[str, float] = {}

    def add(self, key: str, value) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(value)

    def add_once(self, key: str, value, reduce=lambda a, b: a + b) -> None:
        self.once[key] = reduce(self.once[key], float(value)) if key in self.once else float(value)

    def result(self, steps: int) -> Dict[str, float]:
        return {**{k: v / steps for k, v in self.sums.items()}, **self.once}


def update_policy(model, opt, batch: TrainBatch, cfg, engine_logp: torch.Tensor, plan: Plan = None) -> Dict[str, float]:
    """One optimizer step per entry of `plan` (default: `update_plan` from the config); returns metrics.

    engine_logp [N, T]: the rollout engine's log-probs (the behaviour policy), compared with the trainer's pre-update
    ones (`policy/engine_logprob_abs_diff_*`, `policy/engine_ratio_*`) and used by the off-policy correction
    (`algo.is_mode`, or `algo.tis_cap`; `policy/is_*` metrics).
    With `model.gradient_checkpointing` the layers recompute their activations in backward.
    """
    with checkpointed_layers(model):
        return _update_steps(model, opt, batch, cfg, engine_logp, plan)


def _update_steps(model, opt, batch: TrainBatch, cfg, engine_logp: torch.Tensor, plan: Plan = None) -> Dict[str, float]:
    a, device = cfg.algo, next(model.parameters()).device
    plan = plan or plan_for(batch, a, cfg.train)
    loss_fn, agg_fn = LOSSES.get(a.loss), LOSS_AGGS.get(a.loss_agg)
    kl_fn = KL_ESTIMATORS.get(a.kl.estimator) if a.kl.coef > 0 and a.kl.where == "loss" else None
    multi = updates_per_rollout(a) > 1
    norm_len = a.norm_len or cfg.rollout.max_new_tokens
    rollout_tokens = distributed.all_reduce(float(batch.loss_mask.sum().clamp(min=1)))  # over ranks
    st = _Stats()
    for k, step_rows in enumerate(plan):
        totals = distributed.global_totals(BatchTotals.of(batch.loss_mask[torch.cat(step_rows)], norm_len))
        first_pass = k < a.mini_batches  # the first pass visits every row once; `old` is pre-update
        gates = _entropy_gates(model, batch, step_rows, cfg, st)  # None unless algo.top_entropy_quantile < 1
        opt.zero_grad(set_to_none=True)
        for j, idx in enumerate(step_rows):
            distributed.grad_sync(model, idx is step_rows[-1])  # DDP: all-reduce once per optimizer step
            mb = batch.select(idx)
            mask = mb.loss_mask.to(device)  # [n, T]
            logp, ent = token_logprobs(model, mb.input_ids.to(device), mb.attention_mask.to(device),
                                       cfg.rollout.temperature, with_entropy=True, entropy_grad=a.entropy_coef > 0)
            old = mb.old_logp.to(device) if multi else logp.detach()  # the single-update ratio is 1 by construction
            adv = mb.advantages.to(device)  # [n, T]
            loss_tok, stats = loss_fn(logp, old, adv, mask, a)  # [n, T]
            if gates is not None:
                loss_tok = loss_tok * gates[j]  # the policy gradient only on the step's high-entropy tokens
            eng = engine_logp[idx, : mask.shape[1]].to(device)  # [n, T] the behaviour policy's log-probs
            engine_ratio = torch.exp((old - eng) * mask)  # [n, T] pi_trainer/pi_engine
            isw = importance_weights(a, old - eng, mask)  # algo.is_mode / tis_cap; None: no correction
            if isw is not None:
                loss_tok = loss_tok * isw.weight
            st.add("loss/policy", agg_fn(loss_tok.detach(), mask, totals))
            if kl_fn is not None:
                kl_tok = kl_fn(logp, mb.ref_logp.to(device))  # [n, T]
                loss_tok = loss_tok + a.kl.coef * kl_tok
                st.add("policy/kl", (kl_tok.detach() * mask).sum() / totals.num_tokens)
            if a.entropy_coef > 0:
                loss_tok = loss_tok - a.entropy_coef * ent
            loss = agg_fn(loss_tok, mask, totals)
            (loss * distributed.loss_scale()).backward()  # DDP/FSDP2 average over ranks; 1 alone
            st.add("loss/total", loss.detach())
            st.add("policy/entropy", (ent.detach() * mask).sum() / totals.num_tokens)
            for key, v in stats.items():
                st.add(key, v / totals.num_tokens)
            if first_pass:
                _engine_metrics(st, old, eng, engine_ratio, mask, rollout_tokens, a.tis_cap)
                for key, v in (isw.metric_shares(mask, rollout_tokens) if isw is not None else {}).items():
                    st.add_once(key, v)
        _guarded_step(model, opt, cfg.train.max_grad_norm, st, "policy/grad_norm")
    return st.result(len(plan))


def _entropy_gates(model, batch: TrainBatch, step_rows: List[torch.Tensor], cfg, st: _Stats):
    """algo.top_entropy_quantile < 1: per micro-batch of the step, the loss tokens at or above the step's entropy
    quantile (`algos.entropy_gate`); None when off.

    A no-grad forward pass over the step's micro-batches (the weights the step's gradient is taken at) gives
    the entropies first, so the threshold spans the whole optimizer step on every rank whatever the micro-batch
    split; the cost is one extra forward pass per optimizer step.
    """
    q = cfg.algo.top_entropy_quantile
    if q >= 1:
        return None
    device, ents, masks = next(model.parameters()).device, [], []
    with torch.no_grad():
        for idx in step_rows:
            mb = batch.select(idx)
            ents.append(token_logprobs(model, mb.input_ids.to(device), mb.attention_mask.to(device),
                                       cfg.rollout.temperature, with_entropy=True)[1])
            masks.append(mb.loss_mask.to(device))
    gates, threshold = top_entropy_gates(ents, masks, q, _over_ranks)
    tokens = distributed.all_reduce(float(sum(m.sum() for m in masks)))
    if torch.isfinite(threshold):  # +inf when the step has no loss token
        st.add("policy/entropy_threshold", threshold)
    st.add("policy/entropy_gate_frac", distributed.all_reduce(float(sum(g.sum() for g in gates))) / max(tokens, 1.0))
    return gates


def _over_ranks(t: torch.Tensor) -> torch.Tensor:
    """A rank's 1-D tensor concatenated over all ranks (itself in one process)."""
    return torch.cat([p[0] for p in distributed.all_gather_list([t.cpu()])]).to(t.device)


def _guarded_step(module, opt, max_norm: float, st: "_Stats", norm_key: str) -> None:
    """Clip (when max_norm > 0) and step; a non-finite gradient skips the step (train/skipped_frac: the fraction of a step's updates skipped)."""
    norm = torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm if max_norm > 0 else float("inf"))
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a DTensor
    if not torch.isfinite(norm):
        opt.zero_grad(set_to_none=True)
        st.add("train/skipped_frac", 1)
        return
    st.add(norm_key, norm)
    opt.step()


def _engine_metrics(st: _Stats, old, eng, ratio, mask, rollout_tokens: float, cap: float) -> None:
    """Engine vs trainer on the same (pre-update) weights, summed over the rollout's loss tokens."""
    m = mask.bool()
    if not m.any():
        return
    diff = (old - eng).abs() * mask
    st.add_once("policy/engine_logprob_abs_diff_mean", diff.sum() / rollout_tokens)
    st.add_once("policy/engine_logprob_abs_diff_max", diff.max(), max)
    st.add_once("policy/engine_ratio_mean", (ratio * mask).sum() / rollout_tokens)
    st.add_once("policy/engine_ratio_max", ratio[m].max(), max)
    st.add_once("policy/engine_ratio_min", ratio[m].min(), min)
    if cap > 0:
        st.add_once("policy/engine_ratio_capped", ((ratio > cap) & m).sum() / rollout_tokens)


def update_critic(critic, opt, batch: TrainBatch, old_values: torch.Tensor, returns: torch.Tensor, cfg,
                  plan: Plan) -> Dict[str, float]:
    """PPO value regression on `returns` [N, T] over the same optimizer steps as the policy; token-mean loss."""
    device = next(critic.parameters()).device
    st = _Stats()
    for step_rows in plan:
        totals = distributed.global_totals(BatchTotals.of(batch.loss_mask[torch.cat(step_rows)]))
        opt.zero_grad(set_to_none=True)
        for idx in step_rows:
            mb = batch.select(idx)
            T = mb.input_ids.shape[1]
            mask = mb.loss_mask.to(device)
            values = critic(mb.input_ids.to(device), mb.attention_mask.to(device))  # [n, T]
            loss_tok, stats = value_loss(values, old_values[idx, :T].to(device), returns[idx, :T].to(device), mask,
                                         cfg.algo.critic.value_clip)
            loss = (loss_tok * mask).sum() / totals.num_tokens
            (loss * distributed.loss_scale()).backward()  # DDP/FSDP2 average over ranks; 1 alone
            st.add("loss/value", loss.detach())
            st.add("critic/value_mean", (values.detach() * mask).sum() / totals.num_tokens)
            for key, v in stats.items():
                st.add(key, v / totals.num_tokens)
        _guarded_step(critic, opt, cfg.train.max_grad_norm, st, "critic/grad_norm")
    return st.result(len(plan))
