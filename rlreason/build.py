"""Stage 0 of a run: from a config to the typed `Parts` the loop is handed (DESIGN.md, "build").

`build(cfg)` joins the process group (torchrun), checks the run directory, seeds, and builds the policy
(with `model.lora`: LoRA adapters on its frozen weights, `rlreason/lora.py`) (+ frozen reference when KL is
on, + critic when the estimator needs one, + frozen distillation teacher with `algo.teacher.path`), the rollout engine, the task
mixture, the reward scorer, the prompt sampler and the optimizers; a resumed run then loads its checkpoint.
This is the only module besides the CLI that names tasks and rewards: the trainer calls what it is given.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import torch

from rlreason import checkpoint, distributed, lora, precision, rundir
from rlreason.distill import Teacher, check_vocab
from rlreason.algos import ADVANTAGES, KL_ESTIMATORS
from rlreason.algos.advantages import Estimator
from rlreason.config import Config
from rlreason.config_load import to_yaml
from rlreason.logging import quiet_third_party
from rlreason.optim import adamw
from rlreason.policy import load_model
from rlreason.rewards.routing import Scorer, terms_by_task
from rlreason.rollout import make_engine
from rlreason.rollout.sources import FreshRollouts, make_source
from rlreason.rollout.tools import Tools
from rlreason.sampling import SAMPLERS
from rlreason.tasks.mixture import Mixture, build_task


@dataclass
class Critic:
    """The value model of an estimator that needs one, with its optimizer and LR schedule."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any


@dataclass
class Parts:
    """Everything one run trains with; `step` and `bad_steps` are the loop's counters (restored on resume)."""

    run_dir: Path
    resumed_from: Optional[Path]  # the checkpoint this run continues, None for a fresh run
    model: torch.nn.Module  # the training view (a DDP / FSDP2 module under torchrun)
    engine_model: torch.nn.Module  # the plain full-weight module the engine samples from and `final/` saves
    # (under LoRA: the same module with its adapters inside; vLLM is streamed its merged weights)
    tokenizer: Any
    ref: Optional[torch.nn.Module]  # frozen reference, only with algo.kl.coef > 0 (under LoRA: the adapters off)
    kl: Optional[Callable]  # the KL estimator, only with a reference
    engine: Any  # rollout engine (rollout/__init__.py protocol)
    task: Mixture  # train_samples() / eval_samples(n)
    scorer: Scorer  # rollout -> ScoredRollout; scorer.correct for eval
    sampler: Any  # data.sampling
    estimator: Estimator  # algo.advantage, with its declared traits
    dtype: str  # model.dtype: weights are fp32 masters, forward passes run under `compute()`
    opt: torch.optim.Optimizer
    sched: Any
    critic: Optional[Critic]
    step: int = 0
    bad_steps: int = 0
    teacher: Optional[Teacher] = None  # frozen distillation teacher, only with algo.teacher.path (rlreason/distill.py)
    adapter: Any = None  # model.lora: the PEFT wrapper of `engine_model` (saves, loads, switches off the adapters)
    save_merged: bool = False  # model.lora.save_merged: final/ holds the merged model, not the adapter
    rollouts: Any = field(default_factory=FreshRollouts)  # where a step's rollout comes from (rollout/sources.py):
    # fresh prompts generated to the end, partial rollouts carried between steps (rollout.partial_tokens), or
    # rollouts generated ahead by older weights while the trainer updates (rollout.max_staleness)

    def compute(self):
        """The forward passes' precision context (autocast to bf16 for model.dtype=bfloat16)."""
        return precision.compute(self.dtype, next(self.engine_model.parameters()).device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def prepare_run_dir(cfg: Config) -> Tuple[Path, Optional[Path]]:
    """(run directory, checkpoint to resume or None) under the rules of `rlreason/rundir.py`: an empty
    `run.name` becomes a new unique one (written back into `cfg`); an existing directory is continued or
    replaced only when the config says so. Rank 0 prepares it and writes the resolved `config.yaml`."""
    auto = not cfg.run.name
    if auto:
        cfg.run.name = distributed.all_gather_list([rundir.new_name(Path(cfg.run.root))])[0][0]  # rank 0's
    run_dir = Path(cfg.run.root) / cfg.run.name
    ckpt, wipe = rundir.decide(cfg, run_dir)
    changes = rundir.check_resume(cfg, ckpt, run_dir) if ckpt else {}
    distributed.barrier()  # every rank checked before rank 0 changes anything
    if distributed.is_main():
        if wipe:
            rundir.clear(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        if ckpt:
            rundir.record_resume(run_dir, ckpt, changes)
        if auto:
            rundir.point_latest(run_dir)
    distributed.barrier()
    return run_dir, ckpt


def prompt_room(model, cfg: Config) -> Optional[int]:
    """The longest prompt that leaves room for `rollout.max_new_tokens` in the model's context (None: unknown);
    the default `data.max_prompt_tokens` of file tasks."""
    context = getattr(model.config, "max_position_embeddings", None)
    return context - cfg.rollout.max_new_tokens if context else None


def load_policy(path: str, cfg: Config):
    """(model, tokenizer) of `path` as every stage computes with it: fp32 master weights, and with
    `model.fp32_head` an fp32 output projection. A LoRA adapter folder loads as its base model with the
    adapter merged in."""
    if lora.is_adapter(path):
        model, tok = lora.load_merged(path, precision.MASTER, cfg.model.device)
    else:
        model, tok = load_model(path, precision.MASTER, cfg.model.device)
    if cfg.model.fp32_head:
        precision.fp32_head(model)
    return model, tok


def reference(cfg: Config, adapter) -> Optional[Any]:
    """The frozen KL reference (None without KL): under LoRA the policy with its adapters switched off (no
    copy), else a second load of `model.path` on the policy's compute path."""
    if cfg.algo.kl.coef <= 0:
        return None
    return lora.BaseView(adapter) if adapter is not None else load_policy(cfg.model.path, cfg)[0].eval()


def teacher(cfg: Config, tok) -> Optional[Teacher]:
    """The frozen distillation teacher (None without `algo.teacher.path`): loaded on the policy's compute path
    (fp32 weights, forward passes under `model.dtype`), never trained; its tokenizer must be the policy's."""
    t = cfg.algo.teacher
    if not t.path:
        return None
    model, teacher_tok = load_policy(t.path, cfg)
    check_vocab(teacher_tok, tok, t.path)
    return Teacher(model.eval().requires_grad_(False), t.coef, t.only)


def rollout_tools(r, tok) -> Optional[Tools]:
    """The tools of `rollout.tools` (None for []): `python` runs each call in a fresh sandbox."""
    if not r.tools:
        return None
    from rlreason.rewards.tool_python import python_tool

    return Tools(tok, python_tool(r.tool_timeout_s, r.tool_memory_mb), r.max_tool_calls, r.tool_output_chars,
                 r.tool_workers, r.tool_step_budget_s)


def task_and_scorer(cfg: Config, tok, model) -> Tuple[Mixture, Scorer]:
    """The task mixture (every data file loaded and checked now, prompts against the model's context) and the
    scorer that routes each sample to its task's reward terms."""
    task = build_task(cfg.data, cfg.run.seed, tok, max_prompt_tokens=prompt_room(model, cfg))
    return task, Scorer(terms_by_task(cfg, {e.name: e.task.default_rewards for e in task.entries}), cfg.rewards_on_error)


def build(cfg: Config) -> Parts:
    """Stage 0: every part of the run, restored from its checkpoint when resuming."""
    quiet_third_party(cfg.log.verbose)  # before any model loads: no loading bars, no library warnings
    distributed.init(cfg.model.device)  # torchrun (WORLD_SIZE > 1): join the process group
    estimator = ADVANTAGES.get(cfg.algo.advantage)
    distributed.check_config(cfg, estimator)
    run_dir, ckpt = prepare_run_dir(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.run.seed)
    a, m = cfg.algo, cfg.model
    model, tok = load_policy(str(ckpt / "model") if ckpt and not m.lora.r else m.path, cfg)
    if m.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    adapter = lora.attach(model, m.lora, ckpt / "model" if ckpt else None) if m.lora.r else None
    model = adapter.get_base_model() if adapter is not None else model  # the same module, adapters inside
    engine_model, model = distributed.split_for_engine(model, cfg.train.strategy)  # one process: both are `model`
    ref = reference(cfg, adapter)
    distill_teacher = teacher(cfg, tok)
    engine = make_engine(cfg.rollout.engine, engine_model, tok, cfg.rollout, m.dtype, rollout_tools(cfg.rollout, tok))
    task, scorer = task_and_scorer(cfg, tok, engine_model)
    sampler = SAMPLERS.get(cfg.data.sampling)(task.train_samples(), cfg.data, cfg.run.seed)
    fused = not (distributed.world() > 1 and cfg.train.strategy == "fsdp2")  # FSDP2's DTensors: foreach
    opt, sched = adamw(model, cfg.train.lr, cfg.train, fused)
    critic = None
    if estimator.needs_critic:  # PPO: the value model exists only for an estimator that declares it
        from rlreason.critic import load_critic

        value_model = load_critic(a.critic.path or m.path, precision.MASTER, m.device)
        critic = Critic(value_model, *adamw(value_model, a.critic.lr or cfg.train.lr, cfg.train, fused))
    kl = KL_ESTIMATORS.get(a.kl.estimator) if ref is not None else None
    parts = Parts(run_dir, ckpt, model, engine_model, tok, ref, kl, engine, task, scorer, sampler, estimator,
                  m.dtype, opt, sched, critic, teacher=distill_teacher, adapter=adapter, save_merged=m.lora.save_merged,
                  rollouts=make_source(cfg.rollout, cfg.train.steps, cfg.run.seed))
    own = checkpoint.restore_run(parts, ckpt) if ckpt else False  # True: each rank's own random state restored
    if not own:
        distributed.decorrelate(cfg.run.seed, parts.step)  # ranks > 0 sample with their own stream
    return parts


def build_eval(cfg: Config) -> Tuple[Any, Mixture, Scorer]:
    """(engine, task, scorer) for `rlreason eval`: the model of `model.path` as a training run's held-out eval
    sees it (fp32 weights; the engine samples in `model.dtype`); no optimizer, no run directory."""
    quiet_third_party(cfg.log.verbose)
    model, tok = load_policy(cfg.model.path, cfg)
    engine = make_engine(cfg.rollout.engine, model, tok, cfg.rollout, cfg.model.dtype, rollout_tools(cfg.rollout, tok))
    return (engine, *task_and_scorer(cfg, tok, model))


def evaluate_model(cfg: Config) -> dict:
    """`rlreason eval`: the held-out metrics of `model.path` (greedy accuracy; avg@k, pass@k with eval.samples)."""
    from rlreason.evaluate import evaluate

    engine, task, scorer = build_eval(cfg)
    return evaluate(engine, task.eval_samples(cfg.data.eval_size), scorer.correct,
                    cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens, cfg.eval)
