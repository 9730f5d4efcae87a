"""The RL loop, top to bottom. One step:

  1 prompts -> 2 rollout -> 3 rewards -> 4 train batch (+old/ref/teacher log-probs, critic values)
  -> 5 advantages (+KL in the reward, +the teacher's per-token term) -> 6 update (policy loss, KL, aggregation, AdamW; critic)
  -> 7 weight sync -> 8 log (-> eval, checkpoint)

The loop is handed its parts (`rlreason.build.Parts`): it never names a task, a reward, an estimator or a
loss, and imports nothing from tasks/ or rewards/. What an estimator needs (a critic, batch statistics) it
reads from the estimator's declared traits.

Multi-process (torchrun) touches the loop only at the lines marked `[DIST]`: every rank generates for its
shard of the prompts, the sampler and the eval gather every rank's results, batch-scope advantages see
the gathered batch, the engine gets the full weights, and metrics are reduced before rank 0 logs them.
"""
from __future__ import annotations

import json
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import torch

from rlreason import checkpoint, distributed
from rlreason.algos.advantages import Estimate, token_level_rewards
from rlreason.batching import make_train_batch
from rlreason.build import Parts
from rlreason.config import Config
from rlreason.config_load import to_yaml
from rlreason.errors import Interrupted, TrainingStopped
from rlreason.evaluate import eval_metrics, eval_records
from rlreason.jsonl import read_records
from rlreason.logging import MetricsLogger, eval_intro, eval_line
from rlreason.rollout.base import completion_metrics
from rlreason.sampling import informative_groups
from rlreason.signals import NAMES, StopRequest
from rlreason.types import ScoredRollout, TrainBatch
from rlreason.update import forward_logprobs, forward_values, plan_for, update_critic, update_policy, updates_per_rollout


def train(cfg: Config, parts: Parts) -> Dict[str, float]:
    """Run RL as configured with `parts` (from `build`); returns the summary written to `<run_dir>/summary.json`.

    SIGINT/SIGTERM stop it after the current step (`rlreason.signals`), raising `Interrupted`."""
    p, log, eval_set = parts, open_log(cfg, parts), parts.task.eval_samples(cfg.data.eval_size)
    distributed.check_eval_size(len(eval_set))
    with StopRequest() as stop, p.compute():  # model.dtype=bfloat16: every forward pass under bf16 autocast
        try:
            before = logged_eval(p.run_dir, 0) if p.resumed_from else run_eval(cfg, p, log, eval_set, "before", 0)
            while p.step < cfg.train.steps:
                stats = train_step(cfg, p, log)
                end_of_step(cfg, p, log, eval_set, stats, stop)
            # a resumed run that had already evaluated its last step (killed before summary.json) keeps that eval
            after = (logged_eval(p.run_dir, p.step) if p.resumed_from else {}) or \
                (run_eval(cfg, p, log, eval_set, "after", p.step) if cfg.train.steps else before)
        except KeyboardInterrupt:  # a second signal, or one outside the loop
            raise stopped(cfg, p, log, signal.SIGINT, save=False) from None
    log.write(summary_line(before, after, p.run_dir))
    log.close()
    return finish(cfg, p, before, after)


def train_step(cfg: Config, p: Parts, log) -> Dict[str, float]:
    """Stages 1-8 of one step; returns the update's metrics."""
    p.step += 1
    perf: Dict[str, float] = {}
    t_start = time.time()
    # 1-3 prompts -> rollout -> rewards (dynamic sampling may run several rounds)
    train_part, seen, sampling_info = collect(cfg, p, perf)
    # 4 train batch: old log-probs only when a rollout feeds more than one update, reference log-probs only
    #   with KL, critic values only with a critic
    with timed(perf, "logprobs"):
        batch, engine_logp, values = train_batch(cfg, p, train_part)
    # 5 advantages, with kl.where=reward's per-token KL penalty in the reward
    estimate, stats = advantages(cfg, p, batch, train_part, values)
    # 6 update: one optimizer step per mini-batch per epoch (non-finite ones skipped); the critic follows the plan
    with timed(perf, "update"):
        stats.update(update(cfg, p, batch, engine_logp, values, estimate))
    # 7 weight sync
    with timed(perf, "sync"):
        p.engine.sync_weights(distributed.engine_weights(p.model, p.engine_model))  # [DIST] FSDP2 gathers
    # 8 log (rewards over every completion scored this step)
    metrics = step_metrics(p, seen, stats, perf, sampling_info, batch, t_start)
    log.step(p.step, metrics)
    log.samples(p.step, train_part.rollout, train_part.total)
    return stats


def end_of_step(cfg: Config, p: Parts, log, eval_set, stats: Dict[str, float], stop: StopRequest) -> None:
    """After a step: eval, checkpoint, the non-finite guard rail, and a stop on a signal."""
    if cfg.eval.every and p.step % cfg.eval.every == 0 and p.step < cfg.train.steps:
        run_eval(cfg, p, log, eval_set, "during", p.step)
    p.bad_steps = p.bad_steps + 1 if stats.get("train/skipped_frac") else 0
    saved = bool(cfg.run.save_every) and p.step % cfg.run.save_every == 0
    if saved:
        checkpoint.save_run(p.run_dir, p, to_yaml(cfg), cfg.run.keep_last)  # [DIST] rank 0 writes
    if p.bad_steps >= cfg.train.max_bad_steps:
        log.close()
        raise TrainingStopped(stop_message(cfg, p))
    signum = int(distributed.all_reduce(float(stop.signum), "max"))  # [DIST] every rank stops at the same step
    if signum:
        raise stopped(cfg, p, log, signum, save=cfg.run.save_on_signal and not saved)


@contextmanager
def timed(perf: Dict[str, float], stage: str) -> Iterator[None]:
    """Add the block's wall time to perf[stage] (a stage may run several times per step)."""
    t0 = time.time()
    yield
    perf[stage] = perf.get(stage, 0.0) + time.time() - t0


def open_log(cfg: Config, p: Parts):
    """Rank 0's metrics log (a resumed run first drops the records after its checkpoint); others log nothing."""
    if not distributed.is_main():
        return distributed.Quiet()
    bad = checkpoint.truncate_metrics(p.run_dir, p.step) if p.resumed_from else []
    log = MetricsLogger.from_config(cfg, p.run_dir, resume_step=p.step)
    if bad:
        log.write(f"kept the metrics records up to step {p.step}; skipped {len(bad)} line(s) that are not "
                  f"records: {bad[0]}" + (" ..." if len(bad) > 1 else ""))
    log.write(f"resumed from {p.resumed_from} at step {p.step}" if p.resumed_from else
              f"run directory {p.run_dir}: {cfg.train.steps} steps (config in {p.run_dir / 'config.yaml'})")
    return log


def collect(cfg: Config, p: Parts, perf: Dict[str, float]) -> Tuple[ScoredRollout, ScoredRollout, Dict[str, float]]:
    """Stages 1-3: prompts -> rollout -> rewards. With `algo.dynamic_sampling`, rounds repeat until
    prompts_per_step groups with unequal rewards are kept, or `dynamic_max_rounds` is reached (then the kept
    groups are trained on; if none was kept, the last round is used as is).

    Returns (the scored batch to train on, everything scored this step, {rollout/kept_fraction, rollout/rounds}).
    """
    r, a = cfg.rollout, cfg.algo
    everything: List[ScoredRollout] = []
    kept: List[ScoredRollout] = []
    n_kept = 0
    while True:
        with timed(perf, "generate"):  # 1-2 prompts -> rollout ([DIST] every rank's prompts, this rank's rollout)
            everyone, rollout = p.rollouts.next(p.sampler, p.engine, r, version=p.step - 1)  # rollout/sources.py
        with timed(perf, "reward"):
            scored = p.scorer(rollout, step=p.step)  # 3 each sample scored by its task's terms
        p.sampler.update(everyone, distributed.gather(scored.group_accuracy()))  # [DIST] every prompt's success
        everything.append(scored)
        if not a.dynamic_sampling:
            return scored, scored, p.rollouts.metrics()
        groups = informative_groups(scored.total, r.group_size, scored.valid)[: r.prompts_per_step - n_kept]
        if groups:
            kept.append(scored.select_groups(groups))
            n_kept += len(groups)
        if n_kept >= r.prompts_per_step or len(everything) >= a.dynamic_max_rounds:
            break
    info = {"rollout/kept_fraction": n_kept / (len(everything) * r.prompts_per_step), "rollout/rounds": len(everything)}
    return (ScoredRollout.concat(kept) if kept else everything[-1]), ScoredRollout.concat(everything), info


def train_batch(cfg: Config, p: Parts, scored: ScoredRollout
                ) -> Tuple[TrainBatch, torch.Tensor, Optional[torch.Tensor]]:
    """Stage 4: (the batch, the engine's log-probs [N, T], critic values [N, T] or None)."""
    a, micro = cfg.algo, (cfg.train.micro_batch_size, cfg.train.micro_batch_tokens)
    batch = make_train_batch(scored.rollout, None, p.tokenizer.pad_token_id, a.mask_truncated)
    batch.loss_mask *= torch.tensor(scored.valid, dtype=batch.loss_mask.dtype)[:, None]  # unchecked samples: no loss
    engine_logp = batch.old_logp  # [N, T]
    if updates_per_rollout(a) > 1:
        batch.old_logp = forward_logprobs(p.model, batch, cfg.rollout.temperature, *micro)
    if p.ref is not None:
        batch.ref_logp = forward_logprobs(p.ref, batch, cfg.rollout.temperature, *micro)
    if p.teacher is not None:
        batch.teacher_logp = forward_logprobs(p.teacher.model, batch, cfg.rollout.temperature, *micro)
    values = forward_values(p.critic.model, batch, *micro) if p.critic is not None else None
    return batch, engine_logp, values


def advantages(cfg: Config, p: Parts, batch: TrainBatch, scored: ScoredRollout,
               values: Optional[torch.Tensor]) -> Tuple[Estimate, Dict[str, float]]:
    """Stage 5: the estimator's advantages (set on `batch`) and returns; with kl.where=reward every response
    token's reward gets -coef * KL_t first (`policy/kl` is then this rank's share of the step's mean KL); a
    distillation teacher then adds its per-token term (`rlreason/distill.py`; distill/* metrics likewise)."""
    a, stats = cfg.algo, {}
    scores = torch.tensor(scored.total)  # [N]
    tokens = distributed.all_reduce(float(batch.loss_mask.sum().clamp(min=1)))  # [DIST] over ranks
    if p.kl is not None and a.kl.where == "reward":
        kl_tok = p.kl(batch.old_logp, batch.ref_logp) * batch.loss_mask  # [N, T]
        scores = token_level_rewards(scores, batch.loss_mask) - a.kl.coef * kl_tok  # [N, T]
        stats["policy/kl"] = float(kl_tok.sum() / tokens)
    valid = torch.tensor(scored.valid)  # [N] False: a check could not run; left out of every statistic
    estimate = distributed.global_advantages(p.estimator, scores, cfg.rollout.group_size, a, values=values,
                                             mask=batch.loss_mask, valid=valid)  # [DIST] batch-scope stats: global
    if p.teacher is not None:  # on-policy distillation: the teacher's per-token term joins the advantage
        adv, distill_stats = p.teacher.add(estimate.advantages, batch.old_logp, batch.teacher_logp,
                                           batch.loss_mask, valid, tokens)
        estimate = Estimate(adv, estimate.returns)
        stats.update(distill_stats)
    batch.set_advantages(estimate.advantages)
    return estimate, stats


def update(cfg: Config, p: Parts, batch: TrainBatch, engine_logp: torch.Tensor, values: Optional[torch.Tensor],
           estimate: Estimate) -> Dict[str, float]:
    """Stage 6: the policy update (and the critic's, on the estimator's returns, over the same plan)."""
    p.engine.sleep()  # vLLM on CUDA frees its memory for the update (rollout.sleep_level); woken by the sync
    plan = plan_for(batch, cfg.algo, cfg.train)
    stats = update_policy(p.model, p.opt, batch, cfg, engine_logp, plan)
    p.sched.step()
    if p.critic is not None:
        stats.update(update_critic(p.critic.model, p.critic.opt, batch, values, estimate.returns, cfg, plan))
        p.critic.sched.step()
    return stats


def step_metrics(p: Parts, seen: ScoredRollout, stats: Dict[str, float], perf: Dict[str, float],
                 sampling_info: Dict[str, float], batch: TrainBatch, t_start: float) -> Dict[str, float]:
    """Stage 8's record: reward/* and rollout/* over every completion scored this step on every rank, the
    update's metrics (rank shares summed) and perf/* seconds (averaged over ranks)."""
    metrics = {**scored_metrics(distributed.gather_scored(seen)), **sampling_info,  # [DIST] reduced over ranks
               **distributed.reduce_metrics(stats, summed=distributed.shares(stats)),
               "train/lr": p.sched.get_last_lr()[0],
               "rollout/loss_tokens": distributed.all_reduce(float(batch.loss_mask.sum()))}
    metrics.update(distributed.reduce_metrics({f"perf/{k}_s": v for k, v in perf.items()}))
    metrics["perf/step_s"] = time.time() - t_start
    generated = metrics.get("rollout/new_tokens", metrics["rollout/generated_tokens"])  # partial: this step's rounds
    seconds = metrics.get("perf/generate_ahead_s", perf["generate"])  # max_staleness: generated in the background
    metrics["perf/tokens_per_s"] = generated / max(1e-9, seconds)
    if batch.versions is not None:  # tokens sampled by older policies (partial or asynchronous rollouts)
        metrics.update(staleness_metrics(batch, p.step - 1))
    return metrics


def staleness_metrics(batch: TrainBatch, version: int) -> Dict[str, float]:
    """rollout/staleness_mean and _max: policy versions between the trained weights (`version`) and the ones
    that sampled each trained token; rollout/stale_token_frac: the share of trained tokens from older ones
    (over every rank's trained tokens)."""
    on = batch.loss_mask > 0  # [N, T]
    behind = (version - batch.versions)[on].float()  # [n]
    mine = [float(behind.sum()), float(behind.numel()), float((behind > 0).sum())]
    total, n, stale = distributed.all_reduce(torch.tensor(mine, dtype=torch.float64)).tolist()  # [DIST] over ranks
    n = max(1.0, n)
    return {"rollout/staleness_mean": float(total) / n,
            "rollout/staleness_max": distributed.all_reduce(float(behind.max()) if behind.numel() else 0.0, "max"),
            "rollout/stale_token_frac": float(stale) / n}


def scored_metrics(seen: ScoredRollout) -> Dict[str, float]:
    """reward/* and rollout/* over every completion generated this step."""
    rewards = torch.tensor(seen.total)
    lengths = torch.tensor([len(x.token_ids) for x in seen.rollout.completions], dtype=torch.float)
    n = len(rewards)
    return {
        "reward/mean": rewards.mean().item(),
        "reward/std": rewards.std().item() if n > 1 else 0.0,
        "reward/accuracy": sum(s > 0 for s in seen.correct) / n,
        "reward/masked_frac": sum(not v for v in seen.valid) / n,
        **{f"reward/{k}/mean": sum(v) / len(v) for k, v in seen.per_term.items()},
        **{f"reward/{k}": v for k, v in seen.counts.items()},
        "rollout/response_length": lengths.mean().item(),
        "rollout/generated_tokens": float(lengths.sum()),
        "rollout/truncated": sum(x.truncated for x in seen.rollout.completions) / n,
        **completion_metrics(seen.rollout.completions),  # e.g. tool calls (rollout.tools)
    }


def run_eval(cfg: Config, p: Parts, log, eval_set, tag: str, step: int) -> Dict[str, float]:
    """Held-out eval: every rank evaluates every world-th problem (a vLLM engine under torchrun must generate
    on every rank at once); rank 0 computes the metrics from everyone's per-problem records and logs them."""
    t0 = time.time()
    if tag == "before":
        log.write(eval_intro(len(eval_set), cfg.eval, cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens))
    mine = eval_records(p.engine, distributed.shard_prompts(eval_set), p.scorer.correct,  # [DIST] a shard each
                        cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens, cfg.eval, seed_offset=distributed.rank())
    records = distributed.gather(mine)  # [DIST] the single-process order
    if not distributed.is_main():
        return {}
    m = eval_metrics(records, cfg.eval.pass_k)
    if m:
        m["perf/eval_s"] = time.time() - t0
        log.log(step, m)
        log.write(eval_line(tag, m))
    return m


def logged_eval(run_dir: Path, step: int) -> Dict[str, float]:
    """The eval record at `step` from metrics.jsonl (a resumed run does not re-run the 'before' eval)."""
    path = run_dir / "metrics.jsonl"
    records = read_records(path)[0] if path.is_file() else []  # bad lines were reported by open_log
    return next((r for r in records if r["step"] == step and "eval/accuracy" in r), {})


def stopped(cfg: Config, p: Parts, log, signum: int, save: bool) -> Interrupted:
    """The error that ends a run stopped by a signal: it names the checkpoint to resume from (saved now when
    `save`), and is written to the console and train.log first."""
    if save:
        checkpoint.save_run(p.run_dir, p, to_yaml(cfg), cfg.run.keep_last)  # [DIST] rank 0 writes
    last = checkpoint.latest(p.run_dir)
    how = (f"resume with run.name={cfg.run.name} run.resume=auto (root {cfg.run.root}; from {last})" if last else
           "no checkpoint to resume from (run.save_every=0 and run.save_on_signal=false): a restart begins at step 0")
    message = f"stopped by {NAMES.get(signum, signum)} after step {p.step}; {how}"
    log.write(f"rlreason: {message}")
    log.close()
    return Interrupted(message, signum)


def summary_line(before: Dict[str, float], after: Dict[str, float], run_dir: Path) -> Optional[str]:
    b, a = before.get("eval/accuracy"), after.get("eval/accuracy")
    if b is None or a is None:
        return f"run directory {run_dir}"
    return (f"held-out accuracy: before RL {b:.1%}, after RL {a:.1%} ({(a - b) * 100:+.1f} points); "
            f"run directory {run_dir}")


def stop_message(cfg: Config, p: Parts) -> str:
    last = checkpoint.latest(p.run_dir)
    return (f"stopping at step {p.step}: {p.bad_steps} consecutive steps had a non-finite loss or gradient and "
            f"were skipped (train.max_bad_steps={cfg.train.max_bad_steps}); last checkpoint: "
            f"{last or 'none (set run.save_every)'}")


def finish(cfg: Config, p: Parts, before: Dict[str, float], after: Dict[str, float]) -> Dict[str, float]:
    """Rank 0 saves `final/` (+ `critic.pt`) and `summary.json`; every rank closes its engine and the group."""
    distributed.engine_weights(p.model, p.engine_model)  # [DIST] every rank (FSDP2 gathers)
    main = distributed.is_main()
    summary = {"accuracy_before": before.get("eval/accuracy") if main else None,
               "accuracy_after": after.get("eval/accuracy") if main else None,
               "steps": cfg.train.steps, "run_dir": str(p.run_dir)}
    if main:
        checkpoint.save_final(p.run_dir, p)
        (p.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    p.engine.close()
    distributed.close()
    return summary
