"""The RL loop, top to bottom. One step:

  1 prompts -> 2 rollout -> 3 rewards -> 4 train batch (+old/ref log-probs, critic values)
  -> 5 advantages (+KL in the reward) -> 6 update (policy loss, KL, aggregation, AdamW; critic)
  -> 7 weight sync -> 8 log (-> eval)

The loop never names a task, reward or algorithm: each is looked up by name.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Dict, Optional

import torch

from rlreason.algos import ADVANTAGES, KL_ESTIMATORS
from rlreason.algos.advantages import gae_returns, token_level_rewards
from rlreason.config import Config, to_yaml
from rlreason.critic import load_critic
from rlreason.evaluate import correctness_term, evaluate
from rlreason.logging import MetricsLogger, eval_line
from rlreason.policy import load_model
from rlreason.rewards import compute_rewards
from rlreason.rollout import ENGINES
from rlreason.tasks import TASKS
from rlreason.types import Rollout, TrainBatch
from rlreason.update import (forward_logprobs, forward_values, update_critic, update_plan, update_policy,
                             updates_per_rollout)


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


def train(cfg: Config) -> Dict[str, float]:
    """Run RL as configured; returns the summary written to `<run_dir>/summary.json`."""
    # 0 setup: run directory, seeds, model (+reference), engine, task, optimizer
    run_dir = Path(cfg.run.root) / cfg.run.name
    if run_dir.exists() and not cfg.run.overwrite:
        raise FileExistsError(f"run directory {run_dir} exists (set run.overwrite=true or another run.name)")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.run.seed)
    model, tok = load_model(cfg.model.path, cfg.model.dtype, cfg.model.device)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    ref = load_model(cfg.model.path, cfg.model.dtype, cfg.model.device)[0].eval() if cfg.algo.kl.coef > 0 else None
    engine = ENGINES.get(cfg.rollout.engine)(model, tok, cfg.rollout)
    task = TASKS.get(cfg.data.task)(cfg.data.params, seed=cfg.run.seed)
    prompts = task.train_samples()
    eval_set = task.eval_samples(cfg.data.eval_size)
    eval_tokens = cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, betas=tuple(cfg.train.betas),
                            weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.train.warmup_steps, cfg.train.steps, cfg.train.lr_schedule))
    r, a = cfg.rollout, cfg.algo
    critic = critic_opt = critic_sched = None
    if getattr(ADVANTAGES.get(a.advantage), "needs_critic", False):  # PPO: the value model exists only for gae
        critic = load_critic(a.critic.path or cfg.model.path, cfg.model.dtype, cfg.model.device)
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=a.critic.lr or cfg.train.lr,
                                       betas=tuple(cfg.train.betas), weight_decay=cfg.train.weight_decay)
        critic_sched = torch.optim.lr_scheduler.LambdaLR(critic_opt, sched.lr_lambdas[0])
    kl_fn = KL_ESTIMATORS.get(a.kl.estimator) if ref is not None else None
    acc_term = correctness_term(cfg.rewards).name
    log = MetricsLogger.from_config(cfg, run_dir)

    def run_eval(tag: str, step: int) -> Dict[str, float]:
        t0 = time.time()
        m = evaluate(engine, eval_set, cfg.rewards, eval_tokens, cfg.eval)
        if m:
            m["perf/eval_s"] = time.time() - t0
            log.log(step, m)
            log.write(eval_line(tag, step, m))
        return m

    before = run_eval("before", 0)
    for step in range(1, cfg.train.steps + 1):
        t = {"start": time.time()}
        # 1 prompts
        samples = list(itertools.islice(prompts, r.prompts_per_step))
        # 2 rollout
        rollout = engine.generate(samples, r.group_size, r.temperature, r.top_p, r.max_new_tokens)
        t["generate"] = time.time()
        # 3 rewards
        total, per_term, counts = compute_rewards(rollout, cfg.rewards)
        rewards = torch.tensor(total)  # [N]
        t["reward"] = time.time()
        # 4 train batch: old log-probs only when a rollout feeds more than one update, reference only with KL,
        #   critic values only with a critic
        batch = make_train_batch(rollout, None, tok.pad_token_id, a.mask_truncated)
        engine_logp = batch.old_logp  # [N, T]
        if updates_per_rollout(a) > 1:
            batch.old_logp = forward_logprobs(model, batch, r.temperature, cfg.train.micro_batch_size)
        if ref is not None:
            batch.ref_logp = forward_logprobs(ref, batch, r.temperature, cfg.train.micro_batch_size)
        values = forward_values(critic, batch, cfg.train.micro_batch_size) if critic is not None else None  # [N, T]
        t["logprobs"] = time.time()
        # 5 advantages; with kl.where=reward every response token's reward gets -coef * KL_t
        scores, kl_metrics = rewards, {}  # [N]
        if kl_fn is not None and a.kl.where == "reward":
            kl_tok = kl_fn(batch.old_logp, batch.ref_logp) * batch.loss_mask  # [N, T]
            scores = token_level_rewards(rewards, batch.loss_mask) - a.kl.coef * kl_tok  # [N, T]
            kl_metrics["policy/kl"] = float(kl_tok.sum() / batch.loss_mask.sum().clamp(min=1))
        batch.advantages = ADVANTAGES.get(a.advantage)(scores, r.group_size, a, values=values, mask=batch.loss_mask)
        # 6 update: one optimizer step per mini-batch per epoch, the same plan for the critic
        plan = update_plan(len(batch), a.ppo_epochs, a.mini_batches, cfg.train.micro_batch_size)
        stats = {**kl_metrics, **update_policy(model, opt, batch, cfg, engine_logp, plan)}
        sched.step()
        if critic is not None:
            returns = gae_returns(token_level_rewards(scores, batch.loss_mask), values, batch.loss_mask, a.gamma, a.lam)[1]
            stats.update(update_critic(critic, critic_opt, batch, values, returns, cfg, plan))
            critic_sched.step()
        t["update"] = time.time()
        # 7 weight sync
        engine.sync_weights(model)
        t["sync"] = time.time()
        # 8 log
        lengths = torch.tensor([len(c.token_ids) for c in rollout.completions], dtype=torch.float)
        metrics = {
            "reward/mean": rewards.mean().item(),
            "reward/std": rewards.std().item() if len(rewards) > 1 else 0.0,
            "reward/accuracy": sum(s > 0 for s in per_term[acc_term]) / len(rewards),
            **{f"reward/{k}/mean": sum(v) / len(v) for k, v in per_term.items()},
            **{f"reward/{k}": v for k, v in counts.items()},
            "rollout/response_length": lengths.mean().item(),
            "rollout/truncated": sum(c.truncated for c in rollout.completions) / len(rewards),
            "rollout/loss_tokens": float(batch.loss_mask.sum()),
            **stats,
            "train/lr": sched.get_last_lr()[0],
        }
        stages = ["start", "generate", "reward", "logprobs", "update", "sync"]
        for prev, cur in zip(stages, stages[1:]):
            metrics[f"perf/{cur}_s"] = t[cur] - t[prev]
        metrics["perf/step_s"] = t["sync"] - t["start"]
        metrics["perf/tokens_per_s"] = float(lengths.sum()) / max(1e-9, t["generate"] - t["start"])
        log.step(step, metrics)
        log.samples(step, rollout, total)
        if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.train.steps:
            run_eval("during", step)
    after = run_eval("after", cfg.train.steps) if cfg.train.steps else before
    log.close()
    save_model_atomic(model, tok, run_dir / "final")
    if critic is not None:
        torch.save(critic.state_dict(), run_dir / "critic.pt.tmp")
        os.replace(run_dir / "critic.pt.tmp", run_dir / "critic.pt")
    engine.close()
    summary = {"accuracy_before": before.get("eval/accuracy"), "accuracy_after": after.get("eval/accuracy"),
               "steps": cfg.train.steps, "run_dir": str(run_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
