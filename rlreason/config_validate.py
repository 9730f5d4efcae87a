"""Cross-field config rules, checked before any model loads; each failure names the key and the source."""
from __future__ import annotations

from rlreason.config import Config
from rlreason.errors import ConfigError


def _check(ok: bool, source: str, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: {key}: {problem}")


def _known(registry, name: str, source: str, key: str) -> None:
    _check(name in registry, source, key, f"unknown name '{name}'; known: {', '.join(registry.names())}")


def validate(cfg, source: str = "config") -> None:
    """Cross-field rules; raises ConfigError naming the key and `source`.

    The sections are checked in this order, so a config that breaks several rules reports the first one here.
    """
    if not isinstance(cfg, Config):  # other schemas (e.g. SFTConfig) validate themselves
        return cfg.validate(source)
    from rlreason.plugins import resolve_config

    resolve_config(cfg, source)  # custom tasks and reward terms named by import path join the registries
    _check_model_data_run(cfg, source)
    _check_rollout(cfg.rollout, source)
    _check_algo(cfg.algo, cfg.rollout, source)
    _check_rewards(cfg, source)
    _check_train_eval_log(cfg, source)


def _check_model_data_run(cfg, source: str) -> None:
    """model.*, data.* (the task and its params, sampling, pool size, the mixture) and run.*."""
    from rlreason.sampling import SAMPLERS
    from rlreason.tasks import TASKS
    from rlreason.tasks.mixture import check_data

    r = cfg.rollout
    _check(cfg.model.dtype != "float16", source, "model.dtype", "float16 needs loss scaling, which rlreason does not "
           "implement; use bfloat16 (the same memory, fp32 master weights, no scaling needed) or float32")
    _check(cfg.model.dtype in ("float32", "bfloat16"), source, "model.dtype", f"'{cfg.model.dtype}' is not float32 | bfloat16")
    _check(cfg.model.device in ("cpu", "cuda", "auto"), source, "model.device", f"'{cfg.model.device}' is not cpu | cuda | auto")
    _check_lora(cfg.model.lora, source)
    _known(TASKS, cfg.data.task, source, "data.task")
    try:
        TASKS.get(cfg.data.task).check_params(cfg.data.params)
    except ValueError as err:
        raise ConfigError(f"{source}: data.params: {err}") from None
    _check(cfg.data.eval_size >= 0, source, "data.eval_size", "must be >= 0")
    _known(SAMPLERS, cfg.data.sampling, source, "data.sampling")
    _check(cfg.data.pool_size >= r.prompts_per_step, source, "data.pool_size",
           f"must be >= rollout.prompts_per_step ({r.prompts_per_step})")
    _check(cfg.run.save_every >= 0, source, "run.save_every", "must be >= 0 (0 = off)")
    _check(cfg.run.keep_last >= 1, source, "run.keep_last", "must be >= 1")
    try:
        check_data(cfg.data)
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None


def _check_lora(lo, source: str) -> None:
    """model.lora.*: the rank, scale, dropout and targets; PEFT installed when the rank is > 0."""
    import importlib.util

    _check(lo.r >= 0, source, "model.lora.r", "must be >= 0 (0 = off)")
    if lo.r == 0:
        return
    _check(importlib.util.find_spec("peft") is not None, source, "model.lora.r",
           "LoRA needs PEFT: pip install 'rlreason[lora]'")
    _check(lo.alpha > 0, source, "model.lora.alpha", "must be > 0")
    _check(0 <= lo.dropout < 1, source, "model.lora.dropout", "must be in [0, 1)")
    _check(len(lo.target_modules) > 0, source, "model.lora.target_modules", "needs at least one module name")


def _check_rollout(r, source: str) -> None:
    """rollout.*: the engine and its settings, the batch shape and the sampling parameters."""
    from rlreason.rollout import ENGINES, vllm_installed

    _check(r.engine == "auto" or r.engine in ENGINES, source, "rollout.engine",
           f"unknown name '{r.engine}'; known: auto, {', '.join(ENGINES.names())}")
    _check(r.engine != "vllm" or vllm_installed(), source, "rollout.engine",
           "vllm is not installed: pip install 'rlreason[vllm]' (GPU) or 'rlreason[cpu]' (CPU)")
    _check(not r.stop or r.engine == "vllm", source, "rollout.stop", "needs rollout.engine=vllm (hf stops at EOS only)")
    _check(r.max_model_len >= 0, source, "rollout.max_model_len", "must be >= 0 (0 = the model's limit)")
    _check(0 < r.gpu_memory_utilization <= 1, source, "rollout.gpu_memory_utilization", "must be in (0, 1]")
    _check(r.kv_cache_gib >= 0, source, "rollout.kv_cache_gib", "must be >= 0")
    _check(r.tensor_parallel_size == 1, source, "rollout.tensor_parallel_size", "the colocated engine supports only 1")
    _check(r.sleep_level in (0, 1, 2), source, "rollout.sleep_level", f"{r.sleep_level} is not 0 | 1 | 2")
    _check(r.prompts_per_step >= 1, source, "rollout.prompts_per_step", "must be >= 1")
    _check(r.group_size >= 1, source, "rollout.group_size", "must be >= 1")
    _check(r.temperature > 0, source, "rollout.temperature", "must be > 0")
    _check(0 < r.top_p <= 1, source, "rollout.top_p", "must be in (0, 1]")
    _check(r.max_new_tokens >= 1, source, "rollout.max_new_tokens", "must be >= 1")
    _check(r.batch_size >= 1, source, "rollout.batch_size", "must be >= 1")
    _check_tools(r, source)
    _check_partial(r, source)


def _check_partial(r, source: str) -> None:
    """rollout.partial_tokens and its bound, rollout.max_staleness, and the settings they do not support yet."""
    _check(r.partial_tokens >= 0, source, "rollout.partial_tokens", "must be >= 0 (0 = off)")
    _check(r.partial_max_steps >= 1, source, "rollout.partial_max_steps", "must be >= 1")
    _check(r.partial_groups == 0 or r.partial_groups >= r.prompts_per_step, source, "rollout.partial_groups",
           f"must be 0 (= prompts_per_step) or >= rollout.prompts_per_step ({r.prompts_per_step})")
    if r.partial_tokens:
        _check(not r.stop, source, "rollout.partial_tokens", "is not supported with rollout.stop strings yet "
               "(a stop string split between two rounds would be missed)")
        _check(not r.tools, source, "rollout.partial_tokens", "is not supported with rollout.tools yet")
    _check(r.max_staleness >= 0, source, "rollout.max_staleness", "must be >= 0 (0 = synchronous)")
    if r.max_staleness:
        _check(not r.partial_tokens, source, "rollout.max_staleness", "cannot be combined with rollout.partial_tokens")
        _check(not r.sleep_level, source, "rollout.sleep_level", "must be 0 with rollout.max_staleness (the engine "
               "generates the next rollouts during the update, so its memory cannot be freed then)")


TOOL_NAMES = ("python",)  # rollout.tools: the tools that exist (rlreason/rollout/tools.py, rewards/tool_python.py)


def _check_tools(r, source: str) -> None:
    """rollout.tools and its limits."""
    bad = [t for t in r.tools if t not in TOOL_NAMES]
    _check(not bad, source, "rollout.tools", f"unknown tool {bad[0]!r} (known: {', '.join(TOOL_NAMES)})" if bad else "")
    _check(len(set(r.tools)) == len(r.tools), source, "rollout.tools", "names a tool twice")
    _check(r.max_tool_calls >= 1, source, "rollout.max_tool_calls", "must be >= 1")
    _check(r.tool_timeout_s > 0, source, "rollout.tool_timeout_s", "must be > 0")
    _check(r.tool_memory_mb >= 64, source, "rollout.tool_memory_mb", "must be >= 64 (the interpreter alone needs ~30 MiB)")
    _check(1 <= r.tool_output_chars <= 65536, source, "rollout.tool_output_chars", "must be in [1, 65536]")
    _check(r.tool_workers >= 1, source, "rollout.tool_workers", "must be >= 1")
    _check(r.tool_step_budget_s >= 0, source, "rollout.tool_step_budget_s", "must be >= 0 (0 = no limit)")


def _check_algo(a, r, source: str) -> None:
    """algo.*: the advantage (with the group size it needs), the loss and its knobs, the critic and the KL."""
    from rlreason.algos import ADVANTAGES, KL_ESTIMATORS, LOSS_AGGS, LOSSES

    _known(ADVANTAGES, a.advantage, source, "algo.advantage")
    need = ADVANTAGES.get(a.advantage).min_group_size
    _check(r.group_size >= need, source, "rollout.group_size",
           f"advantage '{a.advantage}' uses a group baseline and needs group_size >= {need} (got {r.group_size})")
    _check(a.adv_eps >= 0, source, "algo.adv_eps", "must be >= 0")
    _check(a.std_ddof in (0, 1), source, "algo.std_ddof", f"{a.std_ddof} is not 0 (population std) | 1 (Bessel)")
    _known(LOSSES, a.loss, source, "algo.loss")
    _check(0 <= a.clip_low < 1, source, "algo.clip_low", "must be in [0, 1)")
    _check(a.clip_high >= 0, source, "algo.clip_high", "must be >= 0")
    _check(a.clip_c == 0 or a.clip_c > 1, source, "algo.clip_c", "must be 0 (off) or > 1")
    _check(a.norm_len >= 0, source, "algo.norm_len", "must be >= 0 (0 = rollout.max_new_tokens)")
    _known(LOSS_AGGS, a.loss_agg, source, "algo.loss_agg")
    _check(a.ppo_epochs >= 1, source, "algo.ppo_epochs", "must be >= 1")
    _check(1 <= a.mini_batches <= r.prompts_per_step * r.group_size, source, "algo.mini_batches",
           f"must be in [1, prompts_per_step * group_size = {r.prompts_per_step * r.group_size}]")
    _check(a.entropy_coef >= 0, source, "algo.entropy_coef", "must be >= 0")
    _check(a.tis_cap == 0 or a.tis_cap >= 1, source, "algo.tis_cap", "must be 0 (off) or >= 1")
    _check_is(a, source)
    pairs = LOSSES.traits(a.loss).get("pairs_with")
    _check(pairs is None or a.advantage in pairs, source, "algo.advantage",
           f"loss '{a.loss}' needs advantage {' | '.join(pairs or ())} (got '{a.advantage}')")
    _check(a.kimi_tau > 0, source, "algo.kimi_tau", "must be > 0")
    _check(a.sppo_eta > 0, source, "algo.sppo_eta", "must be > 0")
    _check(0 <= a.cispo_eps_low <= 1, source, "algo.cispo_eps_low", "must be in [0, 1]")
    _check(a.cispo_eps_high >= 0, source, "algo.cispo_eps_high", "must be >= 0")
    _check(a.pass_k >= 1, source, "algo.pass_k", "must be >= 1")
    _check(a.pass_k == 1 or a.pass_k < r.group_size, source, "algo.pass_k",
           f"must be < rollout.group_size ({r.group_size}): a subset of all G samples has no one to compare with")
    _check(0 <= a.top_entropy_quantile <= 1, source, "algo.top_entropy_quantile", "must be in [0, 1] (1 = off)")
    _check(0 <= a.gamma <= 1, source, "algo.gamma", "must be in [0, 1]")
    _check(0 <= a.lam <= 1, source, "algo.lam", "must be in [0, 1]")
    _check(a.critic.lr >= 0, source, "algo.critic.lr", "must be >= 0 (0 = train.lr)")
    _check(a.critic.value_clip >= 0, source, "algo.critic.value_clip", "must be >= 0 (0 = off)")
    _check(a.kl.coef >= 0, source, "algo.kl.coef", "must be >= 0")
    _known(KL_ESTIMATORS, a.kl.estimator, source, "algo.kl.estimator")
    _check(a.dynamic_max_rounds >= 1, source, "algo.dynamic_max_rounds", "must be >= 1")
    _check(not (a.dynamic_sampling and (r.partial_tokens or r.max_staleness)), source, "algo.dynamic_sampling",
           "is not supported with rollout.partial_tokens or rollout.max_staleness yet")
    _check(a.kl.where in ("loss", "reward"), source, "algo.kl.where", f"'{a.kl.where}' is not loss | reward")
    _check(a.teacher.coef > 0 or not a.teacher.path, source, "algo.teacher.coef",
           "must be > 0 with a teacher (algo.teacher.path='' turns distillation off)")
    _check(a.teacher.path or not a.teacher.only, source, "algo.teacher.only", "needs algo.teacher.path (a teacher)")


def _check_is(a, source: str) -> None:
    """algo.is_mode and its bounds (rlreason/algos/offpolicy.py); algo.tis_cap is token_truncate's older spelling."""
    from rlreason.algos import IS_MODES

    _known(IS_MODES, a.is_mode, source, "algo.is_mode")
    _check(a.tis_cap == 0 or a.is_mode == "none", source, "algo.tis_cap",
           f"is the older spelling of is_mode=token_truncate with is_cap; set it to 0 with is_mode={a.is_mode}")
    _check(a.is_cap >= 1, source, "algo.is_cap", "must be >= 1 (the upper bound C_max)")
    _check(0 <= a.is_min <= 1, source, "algo.is_min", "must be in [0, 1] (the lower bound C_min; 0 = none)")


def _check_rewards(cfg, source: str) -> None:
    """rewards[i]: known names and valid params; the reward terms of each data.mixture entry; rewards_on_error."""
    from rlreason.rewards import REWARDS, validate_params
    from rlreason.rewards.routing import ON_ERROR
    from rlreason.rewards.terms import check_terms

    _check(cfg.rewards_on_error in ON_ERROR, source, "rewards_on_error",
           f"'{cfg.rewards_on_error}' is not {' | '.join(ON_ERROR)}")
    for i, term in enumerate(cfg.rewards):
        _known(REWARDS, term.name, source, f"rewards[{i}].name")
        try:
            validate_params(term.name, term.params)
        except ValueError as err:
            raise ConfigError(f"{source}: rewards[{i}].params: {err}") from None
    for i, m in enumerate(cfg.data.mixture):
        for j, term in enumerate(m.rewards):
            try:
                validate_params(term.name, term.params)
            except (ValueError, KeyError) as err:
                raise ConfigError(f"{source}: data.mixture[{i}].rewards[{j}]: {err}") from None
    named = [("rewards", cfg.rewards)] + [(f"data.mixture[{i}].rewards", m.rewards)
                                          for i, m in enumerate(cfg.data.mixture)]
    for key, terms in named:
        try:
            check_terms(list(terms))  # no name twice; the correctness term needs no verdicts of its own
        except ValueError as err:
            raise ConfigError(f"{source}: {key}: {err}") from None


def _check_train_eval_log(cfg, source: str) -> None:
    """train.* (the optimizer and schedule, micro-batching, the distributed strategy), eval.* and log.*."""
    t = cfg.train
    _check(t.steps >= 0, source, "train.steps", "must be >= 0")
    _check(t.lr > 0, source, "train.lr", "must be > 0")
    _check(t.warmup_steps >= 0, source, "train.warmup_steps", "must be >= 0")
    _check(t.lr_schedule in ("constant", "linear", "cosine"), source, "train.lr_schedule",
           f"'{t.lr_schedule}' is not constant | linear | cosine")
    _check(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), source, "train.betas", "needs two values in [0, 1)")
    _check(t.max_grad_norm >= 0, source, "train.max_grad_norm", "must be >= 0 (0 = off)")
    _check(t.micro_batch_size >= 1, source, "train.micro_batch_size", "must be >= 1")
    _check(t.micro_batch_tokens >= 0, source, "train.micro_batch_tokens", "must be >= 0 (0 = off)")
    _check(t.threads >= 0, source, "train.threads", "must be >= 0")
    _check(t.max_bad_steps >= 1, source, "train.max_bad_steps", "must be >= 1")
    _check(t.strategy in ("ddp", "fsdp2"), source, "train.strategy", f"'{t.strategy}' is not ddp | fsdp2")

    _check(cfg.eval.every >= 0, source, "eval.every", "must be >= 0")
    _check(cfg.eval.max_new_tokens >= 0, source, "eval.max_new_tokens", "must be >= 0")
    e = cfg.eval
    _check(e.samples >= 0, source, "eval.samples", "must be >= 0 (0 = greedy only)")
    _check(e.temperature > 0, source, "eval.temperature", "must be > 0")
    _check(0 < e.top_p <= 1, source, "eval.top_p", "must be in (0, 1]")
    _check(all(1 <= k <= e.samples for k in e.pass_k), source, "eval.pass_k",
           f"{list(e.pass_k)}: each k must be in [1, eval.samples = {e.samples}]")
    _check(cfg.log.wandb in ("disabled", "offline", "online"), source, "log.wandb",
           f"'{cfg.log.wandb}' is not disabled | offline | online")
    _check(cfg.log.samples_every >= 0, source, "log.samples_every", "must be >= 0 (0 = never)")
    _check(cfg.log.progress_every >= 0, source, "log.progress_every", "must be >= 0 (0 = about 20 lines a run)")


def advice(cfg) -> list:
    """Settings that are legal but waste a run, one line each naming the key (`load_config` logs them as
    warnings; `tests/test_config.py` keeps every shipped config free of them)."""
    if not isinstance(cfg, Config):
        return []
    t, r, d, out = cfg.train, cfg.rollout, cfg.data, []
    longest = d.max_prompt_tokens + r.max_new_tokens if d.max_prompt_tokens > 0 else 0
    if t.micro_batch_tokens and longest > t.micro_batch_tokens:
        out.append(f"train.micro_batch_tokens: {t.micro_batch_tokens} is below one prompt + response ("
                   f"{d.max_prompt_tokens} + {r.max_new_tokens} tokens): the longest rows go one per micro-batch")
    generated = r.prompts_per_step * r.group_size * r.max_new_tokens
    if cfg.model.device == "cuda" and r.engine == "hf" and generated >= 100_000:
        out.append(f"rollout.engine: hf for up to {generated} generated tokens a step on a GPU; vllm is "
                   f"several times faster at that size")
    if cfg.model.device == "cuda" and cfg.model.dtype == "float32":
        out.append("model.dtype: float32 on a GPU; bfloat16 (fp32 master weights, bf16 compute) is the usual choice")
    return out
