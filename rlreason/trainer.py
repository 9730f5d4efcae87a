"""The RL loop, top to bottom. One step:

  1 prompts -> 2 rollout -> 3 rewards -> 4 advantages -> 5 train batch (+ref log-probs)
  -> 6 update (loss, KL, aggregation, AdamW) -> 7 weight sync -> 8 log (-> eval)

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
from typing import Dict

import torch

from rlreason.algos import ADVANTAGES, KL_ESTIMATORS, LOSS_AGGS, LOSSES, BatchTotals
from rlreason.config import Config, to_yaml
from rlreason.evaluate import correctness_term, evaluate
from rlreason.logging import MetricsLogger, eval_line
from rlreason.policy import load_model, token_logprobs
from rlreason.rewards import compute_rewards
from rlreason.rollout import make_engine
from rlreason.tasks import TASKS
from rlreason.types import Rollout, TrainBatch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def make_train_batch(rollout: Rollout, advantages: torch.Tensor, pad_id: int) -> TrainBatch:
    """Right-pad prompt+completion ids; loss_mask marks completion tokens; engine log-probs sit at their positions."""
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
        loss_mask[i, p : len(s)] = 1
        engine_logp[i, p : len(s)] = torch.tensor(c.logprobs)
    return TrainBatch(input_ids=ids, attention_mask=attn, loss_mask=loss_mask, old_logp=engine_logp,
                      advantages=advantages)


@torch.no_grad()
def forward_logprobs(model, batch: TrainBatch, temperature: float, micro: int) -> torch.Tensor:
    """log-probs [N, T] of the batch's tokens under `model` (for old/ref log-probs)."""
    device = next(model.parameters()).device
    out = torch.zeros(batch.input_ids.shape)
    for start in range(0, len(batch), micro):
        sl = slice(start, start + micro)
        lp, _ = token_logprobs(model, batch.input_ids[sl].to(device), batch.attention_mask[sl].to(device), temperature)
        out[sl] = lp.cpu()
    return out


def update_policy(model, opt, batch: TrainBatch, cfg: Config, engine_logp: torch.Tensor) -> Dict[str, float]:
    """ppo_epochs passes of micro-batched gradient accumulation, one optimizer step per pass."""
    a, device = cfg.algo, next(model.parameters()).device
    loss_fn, agg_fn = LOSSES.get(a.loss), LOSS_AGGS.get(a.loss_agg)
    kl_fn = KL_ESTIMATORS.get(a.kl.estimator) if a.kl.coef > 0 else None
    totals = BatchTotals.of(batch.loss_mask, a.norm_len or cfg.rollout.max_new_tokens)
    sums: Dict[str, float] = {}  # summed over passes, averaged at the end
    first: Dict[str, float] = {}  # from the first pass only
    add = lambda k, v: sums.__setitem__(k, sums.get(k, 0.0) + float(v))  # noqa: E731
    for epoch in range(a.ppo_epochs):
        opt.zero_grad(set_to_none=True)
        for idx in torch.arange(len(batch)).split(cfg.train.micro_batch_size):
            mb = batch.select(idx)
            mask = mb.loss_mask.to(device)
            logp, ent = token_logprobs(model, mb.input_ids.to(device), mb.attention_mask.to(device),
                                       cfg.rollout.temperature, with_entropy=True)
            old = logp.detach() if a.ppo_epochs == 1 else mb.old_logp.to(device)  # ratio is 1 in the single-update case
            adv = mb.advantages.to(device)
            adv = adv[:, None].expand_as(logp) if adv.dim() == 1 else adv
            loss_tok, stats = loss_fn(logp, old, adv, mask, a)  # [n, T]
            add("loss/policy", agg_fn(loss_tok.detach(), mask, totals))
            if kl_fn is not None:
                kl_tok = kl_fn(logp, mb.ref_logp.to(device))  # [n, T]
                loss_tok = loss_tok + a.kl.coef * kl_tok
                add("policy/kl", (kl_tok.detach() * mask).sum() / totals.num_tokens)
            loss = agg_fn(loss_tok, mask, totals)
            loss.backward()
            add("loss/total", loss.detach())
            add("policy/entropy", (ent * mask).sum() / totals.num_tokens)
            if epoch == 0:  # engine vs trainer on the same weights; later passes see a moved policy
                eng = engine_logp[idx, : mask.shape[1]].to(device)
                diff = (logp.detach() - eng).abs() * mask
                first["rollout/logprob_abs_diff_mean"] = first.get("rollout/logprob_abs_diff_mean", 0.0) + float(
                    diff.sum() / totals.num_tokens)
                first["rollout/logprob_abs_diff_max"] = max(first.get("rollout/logprob_abs_diff_max", 0.0),
                                                            float(diff.max()))
            for k, v in stats.items():
                add(k, v / totals.num_tokens)
        if cfg.train.max_grad_norm > 0:
            add("policy/grad_norm", torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm))
        opt.step()
    return {**{k: v / a.ppo_epochs for k, v in sums.items()}, **first}


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
    engine = make_engine(cfg.rollout.engine, model, tok, cfg.rollout)
    task = TASKS.get(cfg.data.task)(cfg.data.params, seed=cfg.run.seed)
    prompts = task.train_samples()
    eval_set = task.eval_samples(cfg.data.eval_size)
    eval_tokens = cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, betas=tuple(cfg.train.betas),
                            weight_decay=cfg.train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.train.warmup_steps, cfg.train.steps, cfg.train.lr_schedule))
    r, a = cfg.rollout, cfg.algo
    acc_term = correctness_term(cfg.rewards).name
    log = MetricsLogger(run_dir, cfg.train.steps, cfg.log.progress, cfg.log.print_every)

    def run_eval(tag: str, step: int) -> Dict[str, float]:
        t0 = time.time()
        m = evaluate(engine, eval_set, cfg.rewards, eval_tokens)
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
        # 4 advantages
        advantages = ADVANTAGES.get(a.advantage)(rewards, r.group_size, a)  # [N]
        # 5 train batch: old log-probs only when there is more than one update, reference only when KL is on
        batch = make_train_batch(rollout, advantages, tok.pad_token_id)
        engine_logp = batch.old_logp
        if a.ppo_epochs > 1:
            batch.old_logp = forward_logprobs(model, batch, r.temperature, cfg.train.micro_batch_size)
        if ref is not None:
            batch.ref_logp = forward_logprobs(ref, batch, r.temperature, cfg.train.micro_batch_size)
        t["logprobs"] = time.time()
        # 6 update (the engine frees its accelerator memory first; sync_weights wakes it)
        engine.sleep()
        stats = update_policy(model, opt, batch, cfg, engine_logp)
        sched.step()
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
            **stats,
            "train/lr": sched.get_last_lr()[0],
        }
        stages = ["start", "generate", "reward", "logprobs", "update", "sync"]
        for prev, cur in zip(stages, stages[1:]):
            metrics[f"perf/{cur}_s"] = t[cur] - t[prev]
        metrics["perf/step_s"] = t["sync"] - t["start"]
        metrics["perf/tokens_per_s"] = float(lengths.sum()) / max(1e-9, t["generate"] - t["start"])
        log.step(step, metrics)
        if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.train.steps:
            run_eval("during", step)
    after = run_eval("after", cfg.train.steps) if cfg.train.steps else before
    log.close()
    save_model_atomic(model, tok, run_dir / "final")
    engine.close()
    summary = {"accuracy_before": before.get("eval/accuracy"), "accuracy_after": after.get("eval/accuracy"),
               "steps": cfg.train.steps, "run_dir": str(run_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
