"""The RL loop, top to bottom. One step:

  1 prompts -> 2 rollout -> 3 rewards -> 4 train batch (+old/ref log-probs, critic values)
  -> 5 advantages (+KL in the reward) -> 6 update (policy loss, KL, aggregation, AdamW; critic)
  -> 7 weight sync -> 8 log (-> eval)

The loop never names a task, reward or algorithm: each is looked up by name.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Iterator, List, Optional

import torch

from rlreason import checkpoint, distributed
from rlreason.algos import ADVANTAGES, KL_ESTIMATORS
from rlreason.algos.advantages import gae_returns, token_level_rewards
from rlreason.config import Config, to_yaml
from rlreason.critic import load_critic
from rlreason.evaluate import eval_metrics, eval_records
from rlreason.logging import MetricsLogger, eval_line
from rlreason.policy import load_model
from rlreason.rollout import make_engine
from rlreason.sampling import SAMPLERS, informative_groups
from rlreason.tasks.mixture import CORRECT, build_task, score_by_task
from rlreason.types import Rollout, ScoredRollout, TrainBatch
from rlreason.update import forward_logprobs, forward_values, plan_for, update_critic, update_policy, updates_per_rollout


class TrainingStopped(RuntimeError):
    """The run stopped itself (e.g. too many consecutive non-finite steps); the message says why."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def make_train_batch(rollout: Rollout, advantages: Optional[torch.Tensor], pad_id: int,
                     mask_truncated: bool = False) -> TrainBatch:
    """Right-pad prompt+completion ids; loss_mask marks completion tokens; engine log-probs sit at their positions.

    With `mask_truncated`, completions that hit max_new_tokens get an all-zero loss mask (DAPO overlong filtering).
    """
    G = rollout.group_size
    seqs = [rollout.prompt_ids[i // G] + c.token_ids for i, c in enumerate(rollout.completions)]
    N, T = len(seqs), max(len(s) for s in seqs)
    ids = torch.full((N, T), pad_id, dtype=torch.long)
    attn = torch.zeros((N, T), dtype=torch.long)
    loss_mask = torch.zeros((N, T))
    engine_logp = torch.zeros((N, T))
    for i, (s, c) in enumerate(zip(seqs, rollout.completions)):
        p = len(s) - len(c.token_ids)
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        loss_mask[i, p : len(s)] = 0 if (mask_truncated and c.truncated) else 1
        engine_logp[i, p : len(s)] = torch.tensor(c.logprobs)
    return TrainBatch(input_ids=ids, attention_mask=attn, loss_mask=loss_mask, old_logp=engine_logp,
                      advantages=advantages)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the peak LR for optimizer step `step` (0-based): linear warm-up, then constant/linear/cosine."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    frac = (step - warmup) / max(1, total - warmup)
    return max(0.0, 1.0 - frac) if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))


def save_model_atomic(model, tokenizer, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


@contextmanager
def timed(perf: Dict[str, float], stage: str) -> Iterator[None]:
    """Add the block's wall time to perf[stage] (a stage may run several times per step)."""
    t0 = time.time()
    yield
    perf[stage] = perf.get(stage, 0.0) + time.time() - t0


def setup(cfg: Config, run_dir: Path, ckpt: Optional[Path]) -> SimpleNamespace:
    """Stage 0: policy (+reference, +critic), engine, task and prompt sampler, optimizers; restored from `ckpt`."""
    seed_everything(cfg.run.seed)
    a = cfg.algo
    model, tok = load_model(str(ckpt / "model") if ckpt else cfg.model.path, cfg.model.dtype, cfg.model.device)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    engine_model, model = distributed.split_for_engine(model, cfg.train.strategy)  # one process: both are `model`
    ref = load_model(cfg.model.path, cfg.model.dtype, cfg.model.device)[0].eval() if a.kl.coef > 0 else None
    engine = make_engine(cfg.rollout.engine, engine_model, tok, cfg.rollout)
    task = build_task(cfg.data, cfg.run.seed, cfg.rewards, tok)  # loads and checks all data now; samples carry their task
    sampler = SAMPLERS.get(cfg.data.sampling)(task.train_samples(), cfg.data, cfg.run.seed)
    schedule = lambda s: lr_factor(s, cfg.train.warmup_steps, cfg.train.steps, cfg.train.lr_schedule)  # noqa: E731

    fused = not (distributed.world() > 1 and cfg.train.strategy == "fsdp2")  # one fused kernel (CPU and CUDA); FSDP2's DTensors: foreach

    def adamw(module, lr):
        opt = torch.optim.AdamW(module.parameters(), lr=lr, betas=tuple(cfg.train.betas),
                                weight_decay=cfg.train.weight_decay, fused=fused or None)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    opt, sched = adamw(model, cfg.train.lr)
    critic = critic_opt = critic_sched = None
    if getattr(ADVANTAGES.get(a.advantage), "needs_critic", False):  # PPO: the value model exists only for gae
        critic = load_critic(a.critic.path or cfg.model.path, cfg.model.dtype, cfg.model.device)
        critic_opt, critic_sched = adamw(critic, a.critic.lr or cfg.train.lr)
    c = SimpleNamespace(model=model, tok=tok, ref=ref, engine=engine, task=task, sampler=sampler, opt=opt,
                        sched=sched, critic=critic, critic_opt=critic_opt, critic_sched=critic_sched, step=0,
                        bad_steps=0, engine_model=engine_model)
    if ckpt:
        state = checkpoint.load_state(ckpt)
        for name in ("opt", "sched", "critic", "critic_opt", "critic_sched", "sampler"):
            if getattr(c, name) is not None:
                getattr(c, name).load_state_dict(state[name])
        c.step, c.bad_steps = state["step"], state["bad_steps"]
        distributed.reshard_optimizer(c.opt)  # FSDP2: full saved state -> this world size's shards
        checkpoint.set_rng_state(state["rng"])  # last: everything above may have drawn random numbers
    distributed.decorrelate(cfg.run.seed, c.step)  # ranks > 0 sample with their own stream
    return c


def save_checkpoint(cfg: Config, run_dir: Path, c: SimpleNamespace) -> Path:
    state = {name: getattr(c, name).state_dict() for name in
             ("sched", "critic", "critic_opt", "critic_sched", "sampler") if getattr(c, name) is not None}
    state.update(opt=distributed.full_optimizer_state(c.opt), rng=checkpoint.rng_state(), bad_steps=c.bad_steps)
    full = distributed.engine_weights(c.model, c.engine_model)  # every rank (FSDP2 gathers); rank 0 writes once
    path = None
    if distributed.is_main():
        path = checkpoint.save(run_dir, c.step, full, c.tok, state, to_yaml(cfg), cfg.run.keep_last)
    distributed.barrier()
    return path


def collect(cfg: Config, c: SimpleNamespace, score, acc_term: str, perf: Dict[str, float]):
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
        with timed(perf, "generate"):
            everyone = c.sampler.next(r.prompts_per_step)  # 1 (every rank draws the same; keeps its shard)
            samples = distributed.shard_prompts(everyone)
            rollout = c.engine.generate(samples, r.group_size, r.temperature, r.top_p, r.max_new_tokens)  # 2
        with timed(perf, "reward"):
            scored = score(rollout)  # 3
        G = r.group_size
        accs = [sum(x > 0 for x in scored.per_term[acc_term][i * G:(i + 1) * G]) / G for i in range(len(samples))]
        c.sampler.update(everyone, distributed.unshard(distributed.all_gather_list(accs)))
        everything.append(scored)
        if not a.dynamic_sampling:
            return scored, scored, {}
        groups = informative_groups(scored.total, G)[: r.prompts_per_step - n_kept]
        if groups:
            kept.append(scored.select_groups(groups))
            n_kept += len(groups)
        if n_kept >= r.prompts_per_step or len(everything) >= a.dynamic_max_rounds:
            break
    info = {"rollout/kept_fraction": n_kept / (len(everything) * r.prompts_per_step), "rollout/rounds": len(everything)}
    return (ScoredRollout.concat(kept) if kept else everything[-1]), ScoredRollout.concat(everything), info


def train(cfg: Config) -> Dict[str, float]:
    """Run RL as configured; returns the summary written to `<run_dir>/summary.json`."""
    # 0 setup: run directory (or the checkpoint to resume), seeds, models, engine, task, optimizers
    distributed.init(cfg.model.device)  # torchrun (WORLD_SIZE > 1): join the process group
    distributed.check_config(cfg)
    run_dir = Path(cfg.run.root) / cfg.run.name
    ckpt = checkpoint.resolve(cfg.run.resume, run_dir)
    if run_dir.exists() and not cfg.run.overwrite and ckpt is None:
        raise FileExistsError(f"run directory {run_dir} exists (set run.overwrite=true, run.resume=auto or another run.name)")
    distributed.barrier()  # every rank checked before rank 0 creates it
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    c = setup(cfg, run_dir, ckpt)
    if ckpt and distributed.is_main():
        checkpoint.truncate_metrics(run_dir, c.step)
    r, a = cfg.rollout, cfg.algo
    eval_set = c.task.eval_samples(cfg.data.eval_size)
    distributed.check_eval_size(len(eval_set))
    eval_tokens = cfg.eval.max_new_tokens or r.max_new_tokens
    kl_fn = KL_ESTIMATORS.get(a.kl.estimator) if c.ref is not None else None
    acc_term = CORRECT  # score_by_task adds a 1/0 'correct' column from each task's correctness term
    score = lambda rollout: ScoredRollout(  # noqa: E731  (each task scores its samples with its own terms)
        rollout, *score_by_task(rollout, c.task.rewards_by_task, step=c.step))
    log = MetricsLogger.from_config(cfg, run_dir, resume_step=c.step) if distributed.is_main() else distributed.Quiet()
    if ckpt:
        log.write(f"resumed from {ckpt} at step {c.step}")

    def run_eval(tag: str, step: int) -> Dict[str, float]:
        # every rank evaluates every world-th problem (a vLLM engine under torchrun must generate on every
        # rank at once); rank 0 gathers the per-problem records, computes the metrics and logs them
        t0 = time.time()
        mine = eval_records(c.engine, distributed.shard_prompts(eval_set), c.task.rewards_by_task, eval_tokens,
                            cfg.eval, seed_offset=distributed.rank())
        records = distributed.unshard(distributed.all_gather_list(mine))  # the single-process order
        if not distributed.is_main():
            return {}
        m = eval_metrics(records, cfg.eval.pass_k)
        if m:
            m["perf/eval_s"] = time.time() - t0
            log.log(step, m)
            log.write(eval_line(tag, step, m))
        return m

    before = logged_eval(run_dir, 0) if ckpt else run_eval("before", 0)
    while c.step < cfg.train.steps:
        c.step += 1
        perf: Dict[str, float] = {}
        t_start = time.time()
        # 1-3 prompts -> rollout -> rewards (dynamic sampling may run several rounds)
        train_part, seen, sampling_info = collect(cfg, c, score, acc_term, perf)
        rollout = train_part.rollout
        rewards = torch.tensor(train_part.total)  # [N]
        # 4 train batch: old log-probs only when a rollout feeds more than one update, reference only with KL,
        #   critic values only with a critic
        with timed(perf, "logprobs"):
            batch = make_train_batch(rollout, None, c.tok.pad_token_id, a.mask_truncated)
            engine_logp = batch.old_logp  # [N, T]
            micro = (cfg.train.micro_batch_size, cfg.train.micro_batch_tokens)
            if updates_per_rollout(a) > 1:
                batch.old_logp = forward_logprobs(c.model, batch, r.temperature, *micro)
            if c.ref is not None:
                batch.ref_logp = forward_logprobs(c.ref, batch, r.temperature, *micro)
            values = forward_values(c.critic, batch, *micro) if c.critic is not None else None
        # 5 advantages; with kl.where=reward every response token's reward gets -coef * KL_t
        scores, stats = rewards, {}  # [N]
        if kl_fn is not None and a.kl.where == "reward":
            kl_tok = kl_fn(batch.old_logp, batch.ref_logp) * batch.loss_mask  # [N, T]
            scores = token_level_rewards(rewards, batch.loss_mask) - a.kl.coef * kl_tok  # [N, T]
            stats["policy/kl"] = float(kl_tok.sum() / batch.loss_mask.sum().clamp(min=1))
        batch.advantages = distributed.global_advantages(ADVANTAGES.get(a.advantage), scores, r.group_size, a,
                                                         values=values, mask=batch.loss_mask)  # batch stats: global
        # 6 update: one optimizer step per mini-batch per epoch (non-finite ones skipped); the critic follows the same plan
        with timed(perf, "update"):
            c.engine.sleep()  # vLLM on CUDA frees its memory for the update (rollout.sleep_level); woken by the sync
            plan = plan_for(batch, a, cfg.train)
            stats.update(update_policy(c.model, c.opt, batch, cfg, engine_logp, plan))
            c.sched.step()
            if c.critic is not None:
                returns = gae_returns(token_level_rewards(scores, batch.loss_mask), values, batch.loss_mask,
                                      a.gamma, a.lam)[1]
                stats.update(update_critic(c.critic, c.critic_opt, batch, values, returns, cfg, plan))
                c.critic_sched.step()
        # 7 weight sync
        with timed(perf, "sync"):
            c.engine.sync_weights(distributed.engine_weights(c.model, c.engine_model))
        # 8 log (rewards over every completion scored this step), eval, checkpoint, guard rail
        update_shares = [k for k in distributed.shares(stats) if not (k == "policy/kl" and a.kl.where == "reward")]
        metrics = {**step_metrics(distributed.gather_scored(seen), acc_term), **sampling_info,
                   **distributed.reduce_metrics(stats, summed=update_shares), "train/lr": c.sched.get_last_lr()[0],
                   "rollout/loss_tokens": distributed.all_reduce(float(batch.loss_mask.sum()))}
        metrics.update(distributed.reduce_metrics({f"perf/{k}_s": v for k, v in perf.items()}))
        metrics["perf/step_s"] = time.time() - t_start
        metrics["perf/tokens_per_s"] = metrics["rollout/generated_tokens"] / max(1e-9, perf["generate"])
        log.step(c.step, metrics)
        log.samples(c.step, train_part.rollout, train_part.total)
        if cfg.eval.every and c.step % cfg.eval.every == 0 and c.step < cfg.train.steps:
            run_eval("during", c.step)
        c.bad_steps = c.bad_steps + 1 if stats.get("train/skipped_frac") else 0
        if cfg.run.save_every and c.step % cfg.run.save_every == 0:
            save_checkpoint(cfg, run_dir, c)
        if c.bad_steps >= cfg.train.max_bad_steps:
            log.close()
            last = checkpoint.latest(run_dir)
            raise TrainingStopped(f"stopping at step {c.step}: {c.bad_steps} consecutive steps had a non-finite loss "
                                  f"or gradient and were skipped (train.max_bad_steps={cfg.train.max_bad_steps}); "
                                  f"last checkpoint: {last or 'none (set run.save_every)'}")
    after = run_eval("after", cfg.train.steps) if cfg.train.steps else before
    log.close()
    full = distributed.engine_weights(c.model, c.engine_model)
    if not distributed.is_main():  # rank 0 writes the final model and the summary
        c.engine.close()
        distributed.close()
        return {"accuracy_before": None, "accuracy_after": None, "steps": cfg.train.steps, "run_dir": str(run_dir)}
    save_model_atomic(full, c.tok, run_dir / "final")
    if c.critic is not None:
        torch.save(c.critic.state_dict(), run_dir / "critic.pt.tmp")
        os.replace(run_dir / "critic.pt.tmp", run_dir / "critic.pt")
    c.engine.close()
    summary = {"accuracy_before": before.get("eval/accuracy"), "accuracy_after": after.get("eval/accuracy"),
               "steps": cfg.train.steps, "run_dir": str(run_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    distributed.close()
    return summary


def step_metrics(seen: ScoredRollout, acc_term: str) -> Dict[str, float]:
    """reward/* and rollout/* over every completion generated this step."""
    rewards = torch.tensor(seen.total)
    lengths = torch.tensor([len(x.token_ids) for x in seen.rollout.completions], dtype=torch.float)
    n = len(rewards)
    return {
        "reward/mean": rewards.mean().item(),
        "reward/std": rewards.std().item() if n > 1 else 0.0,
        "reward/accuracy": sum(s > 0 for s in seen.per_term[acc_term]) / n,
        **{f"reward/{k}/mean": sum(v) / len(v) for k, v in seen.per_term.items() if k != acc_term},
        **{f"reward/{k}": v for k, v in seen.counts.items()},
        "rollout/response_length": lengths.mean().item(),
        "rollout/generated_tokens": float(lengths.sum()),
        "rollout/truncated": sum(x.truncated for x in seen.rollout.completions) / n,
    }


def logged_eval(run_dir: Path, step: int) -> Dict[str, float]:
    """The eval record at `step` from metrics.jsonl (a resumed run does not re-run the 'before' eval)."""
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        rec = json.loads(line)
        if rec.get("step") == step and "eval/accuracy" in rec:
            return rec
    return {}
