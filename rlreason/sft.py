"""Cold-start SFT (`rlreason sft`): fine-tune on a task's worked demonstrations before RL.

As DeepSeek-R1 and Kimi k1.5 do, a short supervised stage teaches the output
format (reasoning in <think>...</think>, then a boxed answer) so that RL starts
from a model that is partly competent. The loss covers completion tokens only.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, List, Optional

import torch

from rlreason.batching import sft_batch
from rlreason.checkpoint import save_pretrained
from rlreason.optim import lr_at
from rlreason.sft_config import SFTConfig
from rlreason.sft_demos import DEMOS, make_examples  # noqa: F401  (make_examples: the `task` source's pairs)


def train_sft(model, tokenizer, data: List[tuple], cfg: SFTConfig, progress: bool = True,
              on_step: Optional[Callable[[int, float], None]] = None) -> List[float]:
    """Run cfg.steps AdamW steps over `data`, (prompt_ids, completion_ids) pairs (reshuffled each epoch);
    returns the loss per step."""
    from tqdm import tqdm

    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    order: List[int] = []
    losses = []
    model.train()
    bar = tqdm(range(cfg.stop_at or cfg.steps), desc="sft", disable=not progress, dynamic_ncols=True)
    for step in bar:
        if len(order) < cfg.batch_size:
            order += torch.randperm(len(data), generator=gen).tolist()
        batch, order = [data[i] for i in order[: cfg.batch_size]], order[cfg.batch_size :]
        ids, mask, labels = (x.to(device) for x in sft_batch(batch, tokenizer.pad_token_id))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, "cosine", floor=0.1)  # warm-up, cosine to 10%
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_step:
            on_step(step, losses[-1])
    return losses


def run_sft(cfg: SFTConfig, progress: bool = True) -> dict:
    """Build or load the model, gather its demonstrations (`cfg.demos`, rlreason/sft_demos.py), fine-tune,
    evaluate greedily on the held-out split, save to cfg.out with sft_info.json."""
    from rlreason.evaluate import evaluate
    from rlreason.policy import load_model
    from rlreason.rewards.routing import Scorer
    from rlreason.rollout.hf import HFEngine
    from rlreason.tasks import TASKS
    from rlreason.tinymodel import build_model, build_tokenizer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    task = TASKS.get(cfg.task)(cfg.task_params, seed=cfg.seed)
    if cfg.init == "scratch":
        tokenizer = build_tokenizer(cfg.max_positions)
        model = build_model(tokenizer, cfg.hidden_size, cfg.layers, cfg.heads, cfg.intermediate_size,
                            cfg.max_positions, cfg.seed)
    else:
        model, tokenizer = load_model(cfg.init)
    data, demo_info = DEMOS.get(cfg.demos)(task, model, tokenizer, cfg)
    t0 = time.time()
    losses = train_sft(model, tokenizer, data, cfg, progress)
    seconds = time.time() - t0
    engine = HFEngine(model, tokenizer)
    if getattr(task, "tools", ()):  # demonstrations that call tools: the eval runs them too (default limits)
        from rlreason.build import rollout_tools
        from rlreason.config import RolloutConfig

        engine.tools = rollout_tools(RolloutConfig(tools=list(task.tools)), tokenizer)
    metrics = evaluate(engine, task.eval_samples(cfg.eval_size), Scorer.for_all(task.default_rewards).correct,
                       max_new_tokens=cfg.max_positions // 2)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_pretrained(model, tokenizer, out)
    info = {"sft_config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}, "final_loss": losses[-1] if losses else None,
            "train_seconds": round(seconds, 1), "params": sum(p.numel() for p in model.parameters()), **demo_info, **metrics}
    (out / "sft_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
