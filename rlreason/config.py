"""The config schema (dataclasses, one docstring per field) and its loader.

OmegaConf merges schema <- YAML file <- `key=value` overrides, rejecting unknown
keys and wrong types; `validate()` then checks cross-field rules. Both run
before any model loads and raise `ConfigError` with a one-line message that
names the key and the file.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A bad config: the message names the key and the file."""


def _doc(text: str) -> Dict[str, str]:
    return {"doc": text}


@dataclass
class RunConfig:
    name: str = "default"
    """Run name; the run directory is `<root>/<name>`."""
    root: str = "runs"
    """Parent folder of run directories."""
    seed: int = 0
    """Seed for torch, sampling and the data order."""
    overwrite: bool = True
    """Reuse an existing run directory (its metrics.jsonl is replaced)."""
    resume: str = ""
    """'' = fresh run; 'auto' = continue from the newest complete checkpoint in the run directory (fresh if none); or a checkpoint folder."""
    save_every: int = 0
    """Write a checkpoint every N steps (0 = none; the final model is always saved)."""
    keep_last: int = 2
    """Checkpoints kept (older ones are deleted after a new one is complete)."""


@dataclass
class ModelConfig:
    path: str = "models/tiny-reasoner"
    """HF model id or local folder. Relative paths are tried from the working directory, then from the repo root."""
    dtype: str = "float32"
    """Training and rollout dtype: float32 | bfloat16 | float16."""
    device: str = "auto"
    """cpu | cuda | auto (cuda when available)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""


@dataclass
class DataConfig:
    task: str = "arithmetic"
    """Task name (`rlreason list` shows the registered tasks)."""
    params: Dict[str, Any] = field(default_factory=dict)
    """Task-specific parameters, e.g. for arithmetic {min_digits: 1, max_digits: 2, operands: 3}."""
    eval_size: int = 256
    """Number of held-out problems scored before training, at `eval.every` and at the end."""
    sampling: str = "uniform"
    """Training prompt order: uniform (the task's stream) | prioritized (Kimi: p ∝ 1 - success rate) | curriculum (by meta difficulty)."""
    pool_size: int = 4096
    """prioritized / curriculum: the pool is the first pool_size prompts of the training split."""
    template: str = "task"
    """Prompt template: task (the task's own chat turns) | chat (tokenizer chat template) | r1_zero | plain (raw text for base models)."""
    system_prompt: str = ""
    """System turn for chat templates (a line before the text for r1_zero / plain); empty = none."""
    mixture: List["MixtureEntry"] = field(default_factory=list)
    """Several tasks in one run: a list of {task, name, params, weight, rewards, eval_size}; replaces task/params."""
    on_bad_row: str = "error"
    """A bad data row (missing field, unparsable answer, over-long prompt): error (name file and line) | skip (count, log once)."""
    max_prompt_tokens: int = 0
    """Prompts longer than this many tokens (after the template) are bad rows, checked at load for file tasks (0 = no limit)."""


@dataclass
class RolloutConfig:
    engine: str = "hf"
    """Rollout engine: hf (transformers.generate) | vllm (colocated vLLM) | auto (vllm when it imports and CUDA is present, else hf)."""
    prompts_per_step: int = 16
    """Prompts sampled per RL step."""
    group_size: int = 8
    """Completions per prompt (G); group baselines compare these."""
    temperature: float = 1.0
    """Sampling temperature; the trainer's log-probs use the same temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0 = off)."""
    max_new_tokens: int = 64
    """Longest completion; longer ones end with finish_reason 'length'."""
    batch_size: int = 256
    """Sequences generated per `generate` call."""
    stop: List[str] = field(default_factory=list)
    """vllm: extra stop strings (the completion ends with finish_reason 'stop'; its text keeps the stop string)."""
    max_model_len: int = 0
    """vllm: longest prompt + completion in tokens (0 = the model's max_position_embeddings)."""
    gpu_memory_utilization: float = 0.4
    """vllm on CUDA: fraction of GPU memory for weights + KV cache; the rest stays for training."""
    kv_cache_gib: float = 0.0
    """vllm: KV-cache size in GiB (0 = from gpu_memory_utilization on CUDA, 1 GiB on CPU)."""
    enforce_eager: bool = True
    """vllm: no CUDA graphs / torch.compile (fast start-up); false decodes faster on GPU after a slower start."""
    tensor_parallel_size: int = 1
    """vllm: GPUs per engine; the in-process colocated engine supports 1."""
    sleep_level: int = 0
    """vllm on CUDA: sleep during the policy update; 0 off, 1 offload weights to CPU RAM, 2 drop them (the sync reloads)."""


@dataclass
class KLConfig:
    coef: float = 0.0
    """Weight of the KL penalty against the frozen reference; 0 loads no reference model."""
    estimator: str = "k3"
    """KL estimator: k1 | k2 | k3 (Schulman's approximations)."""
    where: str = "loss"
    """loss: add coef*KL_t to the per-token loss (GRPO) | reward: subtract coef*KL_t from the reward at each token (PPO/RLHF)."""


@dataclass
class CriticConfig:
    path: str = ""
    """Value model initialisation: HF id or folder ('' = model.path); a scalar head is added. Loaded only for advantage gae."""
    lr: float = 0.0
    """Critic AdamW learning rate (0 = train.lr)."""
    value_clip: float = 0.2
    """PPO value clipping: V is kept within +-value_clip of the rollout-time value in the clipped term (0 = off)."""


@dataclass
class AlgoConfig:
    advantage: str = "grpo"
    """Advantage estimator (registry `advantage`)."""
    std_normalize: bool = True
    """grpo: divide by the group's standard deviation (population std, ddof=0)."""
    adv_eps: float = 1e-6
    """Added to the std before dividing."""
    loss: str = "ppo_clip"
    """Policy loss (registry `loss`)."""
    clip_low: float = 0.2
    """PPO clip: ratio lower bound is 1 - clip_low."""
    clip_high: float = 0.2
    """PPO clip: ratio upper bound is 1 + clip_high (DAPO clip-higher uses 0.28)."""
    clip_c: float = 0.0
    """ppo_clip dual clip: for negative advantages the loss is at most -clip_c*A (0 = off; e.g. 3.0)."""
    loss_agg: str = "token_mean"
    """Loss aggregation (registry `loss_agg`)."""
    norm_len: int = 0
    """seq_sum_norm: the constant token-sum divisor (0 = rollout.max_new_tokens)."""
    ppo_epochs: int = 1
    """Passes over each rollout; more than one update per rollout needs old log-probs from an extra forward pass."""
    mini_batches: int = 1
    """Optimizer steps per pass: the rollout is shuffled and split into this many mini-batches."""
    entropy_coef: float = 0.0
    """Entropy bonus: coef * entropy is subtracted from the per-token loss (0 = off)."""
    tis_cap: float = 0.0
    """Truncated importance sampling: weight each token's loss by min(pi_trainer/pi_engine, tis_cap) (0 = off)."""
    mask_truncated: bool = False
    """Drop completions cut off at max_new_tokens from the loss (DAPO overlong filtering)."""
    dynamic_sampling: bool = False
    """DAPO dynamic sampling: drop groups whose rewards are all equal and sample more prompts to refill the batch."""
    dynamic_max_rounds: int = 4
    """dynamic_sampling: at most this many generation rounds per step (then train on the groups kept so far)."""
    kimi_tau: float = 0.1
    """kimi loss: tau, the weight of the log-ratio (mirror-descent regulariser)."""
    sppo_eta: float = 1.0
    """sppo loss: eta, the scale of the win-rate target P - 1/2."""
    gamma: float = 1.0
    """gae: discount over response tokens."""
    lam: float = 0.95
    """gae: lambda of generalised advantage estimation."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """The value model, used only by advantage gae."""
    kl: KLConfig = field(default_factory=KLConfig)
    """KL penalty against the initial policy."""


@dataclass
class RewardTerm:
    name: str = "math_answer"
    """Reward term name (`rlreason list`)."""
    weight: float = 1.0
    """Weight in the summed reward."""
    params: Dict[str, Any] = field(default_factory=dict)
    """Term-specific parameters."""


@dataclass
class MixtureEntry:
    task: str = "arithmetic"
    """Task name (`rlreason list`)."""
    name: str = ""
    """Entry name, carried by its samples (Sample.task) to route rewards; default: the task name."""
    params: Dict[str, Any] = field(default_factory=dict)
    """The task's parameters."""
    weight: float = 1.0
    """Sampling weight: a prompt comes from this entry with probability weight / sum of weights."""
    rewards: List[RewardTerm] = field(default_factory=list)
    """Reward terms for this entry's samples; empty = the task's default_rewards."""
    eval_size: Optional[int] = None
    """Held-out problems of this entry (default: data.eval_size)."""


@dataclass
class TrainConfig:
    steps: int = 100
    """RL steps (one rollout + update each)."""
    lr: float = 1e-6
    """AdamW peak learning rate."""
    warmup_steps: int = 0
    """Linear warm-up steps to the peak learning rate."""
    lr_schedule: str = "constant"
    """After warm-up: constant | linear (decay to 0 at the last step) | cosine (decay to 0 at the last step)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    max_grad_norm: float = 1.0
    """Clip the gradient's global norm (0 = off)."""
    micro_batch_size: int = 64
    """Sequences per forward/backward; gradients accumulate to the full step."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    max_bad_steps: int = 3
    """Stop the run after this many consecutive steps with a non-finite loss or gradient (such steps are skipped)."""


@dataclass
class EvalConfig:
    every: int = 0
    """Held-out evaluation every N steps (0 = only before and after training)."""
    max_new_tokens: int = 0
    """Generation limit for evaluation (0 = rollout.max_new_tokens)."""
    samples: int = 0
    """Sampled completions per held-out problem for avg@k / pass@k (0 = greedy accuracy only)."""
    temperature: float = 1.0
    """Sampling temperature of those completions."""
    top_p: float = 1.0
    """Nucleus sampling mass of those completions (1.0 = off)."""
    pass_k: List[int] = field(default_factory=list)
    """k values for eval/avg@k and eval/pass@k (Chen et al. 2021 unbiased estimator), each <= samples; [] = [1, samples]."""
    seed: int = 0
    """Seed of the sampled completions (the training RNG stream is left untouched)."""


@dataclass
class LogConfig:
    progress: bool = True
    """Show a console progress bar."""
    print_every: int = 0
    """Also print one metrics line every N steps (0 = never)."""
    wandb: str = "disabled"
    """Weights & Biases: disabled | offline (files under <run_dir>/wandb, no network) | online."""
    project: str = "rlreason"
    """W&B project."""
    name: str = ""
    """W&B run name ('' = run.name)."""
    group: str = ""
    """W&B run group ('' = none)."""
    tags: List[str] = field(default_factory=list)
    """W&B run tags."""
    samples_every: int = 0
    """Every N steps write sample prompts/completions/rewards to <run_dir>/samples.jsonl and a W&B table (0 = never)."""


@dataclass
class Config:
    """A training run (`rlreason train`)."""

    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    rewards: List[RewardTerm] = field(default_factory=list)
    """Reward terms summed with weights: a list of {name, weight, params} (see RewardTerm); empty = the task's default terms."""
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)


# ---------------------------------------------------------------- loading

def _format_omegaconf_error(err: OmegaConfBaseException, source: str) -> str:
    key = getattr(err, "full_key", None) or ""
    msg = str(getattr(err, "msg", None) or err).splitlines()[0]
    if "not in" in msg and key:
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        return f"{source}: unknown key '{key}'" + (f" (under '{parent}')" if parent else "")
    return f"{source}: key '{key}': {msg}" if key else f"{source}: {msg}"


def _merge(base, other, source: str):
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as err:
        raise ConfigError(_format_omegaconf_error(err, source)) from None


def _yaml_chain(path: Path, seen: tuple = ()) -> List[tuple]:
    """[(file, data)] from the outermost `base:` to `path`: a YAML may name `base: other.yaml`
    (relative to itself), whose values it overrides."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file" + (f" (the base of {seen[-1]})" if seen else ""))
    if path.resolve() in seen:
        raise ConfigError(f"{path}: circular 'base:' chain")
    try:
        data = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    base = data.pop("base", None) if OmegaConf.is_dict(data) else None
    if base is None:
        return [(path, data)]
    if not isinstance(base, str):
        raise ConfigError(f"{path}: key 'base': expected a path to another YAML file")
    return _yaml_chain(path.parent / base, seen + (path.resolve(),)) + [(path, data)]


def load_config(path: Optional[str], overrides: List[str] = (), schema: type = Config):
    """Merge schema <- YAML file <- `key=value` overrides, then validate.

    Returns an instance of `schema` (plain dataclasses).
    """
    cfg = OmegaConf.structured(schema)
    source = "defaults"
    if path:
        for p, data in _yaml_chain(Path(path)):
            cfg = _merge(cfg, data, str(p))
        source = path
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value")
        key = item.split("=", 1)[0]
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__" and "." in key:
            parent = key.rsplit(".", 1)[0]
            node = OmegaConf.select(cfg, parent, default=None)
            if node is None or not OmegaConf.is_dict(node) or OmegaConf.get_type(node) is not dict:
                raise ConfigError(f"override '{item}': unknown key '{key}'")
        try:
            other = OmegaConf.from_dotlist([item])
        except OmegaConfBaseException as err:
            raise ConfigError(f"override '{item}': {str(err).splitlines()[0]}") from None
        cfg = _merge(cfg, other, f"override '{item}'")
    obj = OmegaConf.to_object(cfg)
    validate(obj, (source if path else "config") + (" + overrides" if overrides else ""))
    return obj


def to_yaml(cfg) -> str:
    """The resolved config as YAML (what `rlreason config` prints and the run directory keeps)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg) -> Dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg))


def field_docs(schema: type, prefix: str = "") -> List[tuple]:
    """(key, default, doc) for every leaf field, read from the attribute docstrings in this file."""
    import ast
    import inspect

    out = []
    src = ast.parse(inspect.getsource(schema))
    body = src.body[0].body
    docs = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = str(b.value.value)
    inst = schema()
    for f in fields(schema):
        val = getattr(inst, f.name)
        if is_dataclass(val):
            out += field_docs(type(val), prefix + f.name + ".")
        else:
            out.append((prefix + f.name, val, docs.get(f.name, "")))
    return out


# ---------------------------------------------------------------- validation

def _check(ok: bool, source: str, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: {key}: {problem}")


def _known(registry, name: str, source: str, key: str) -> None:
    _check(name in registry, source, key, f"unknown name '{name}'; known: {', '.join(registry.names())}")


def validate(cfg, source: str = "config") -> None:
    """Cross-field rules; raises ConfigError naming the key and `source`."""
    if not isinstance(cfg, Config):  # other schemas (e.g. SFTConfig) validate themselves
        return cfg.validate(source)
    from rlreason.algos import ADVANTAGES, KL_ESTIMATORS, LOSS_AGGS, LOSSES
    from rlreason.rewards import REWARDS, validate_params
    from rlreason.rollout import ENGINES, vllm_installed
    from rlreason.sampling import SAMPLERS
    from rlreason.tasks import TASKS

    r, a, t = cfg.rollout, cfg.algo, cfg.train
    _check(cfg.model.dtype in ("float32", "bfloat16", "float16"), source, "model.dtype", f"'{cfg.model.dtype}' is not float32 | bfloat16 | float16")
    _check(cfg.model.device in ("cpu", "cuda", "auto"), source, "model.device", f"'{cfg.model.device}' is not cpu | cuda | auto")
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
    from rlreason.tasks.mixture import check_data
    try:
        check_data(cfg.data)
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
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
    _known(ADVANTAGES, a.advantage, source, "algo.advantage")
    if getattr(ADVANTAGES.get(a.advantage), "needs_group", False):
        _check(r.group_size >= 2, source, "rollout.group_size",
               f"advantage '{a.advantage}' uses a group baseline and needs group_size >= 2 (got {r.group_size})")
    _check(a.adv_eps >= 0, source, "algo.adv_eps", "must be >= 0")
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
    pairs = getattr(LOSSES.get(a.loss), "pairs_with", None)
    _check(pairs is None or a.advantage in pairs, source, "algo.advantage",
           f"loss '{a.loss}' needs advantage {' | '.join(pairs or ())} (got '{a.advantage}')")
    _check(a.kimi_tau > 0, source, "algo.kimi_tau", "must be > 0")
    _check(a.sppo_eta > 0, source, "algo.sppo_eta", "must be > 0")
    _check(0 <= a.gamma <= 1, source, "algo.gamma", "must be in [0, 1]")
    _check(0 <= a.lam <= 1, source, "algo.lam", "must be in [0, 1]")
    _check(a.critic.lr >= 0, source, "algo.critic.lr", "must be >= 0 (0 = train.lr)")
    _check(a.critic.value_clip >= 0, source, "algo.critic.value_clip", "must be >= 0 (0 = off)")
    _check(a.kl.coef >= 0, source, "algo.kl.coef", "must be >= 0")
    _known(KL_ESTIMATORS, a.kl.estimator, source, "algo.kl.estimator")
    _check(a.dynamic_max_rounds >= 1, source, "algo.dynamic_max_rounds", "must be >= 1")
    _check(a.kl.where in ("loss", "reward"), source, "algo.kl.where", f"'{a.kl.where}' is not loss | reward")
    for i, term in enumerate(cfg.rewards):
        _known(REWARDS, term.name, source, f"rewards[{i}].name")
        try:
            validate_params(term.name, term.params)
        except ValueError as err:
            raise ConfigError(f"{source}: rewards[{i}].params: {err}") from None
    _check(t.steps >= 0, source, "train.steps", "must be >= 0")
    _check(t.lr > 0, source, "train.lr", "must be > 0")
    _check(t.warmup_steps >= 0, source, "train.warmup_steps", "must be >= 0")
    _check(t.lr_schedule in ("constant", "linear", "cosine"), source, "train.lr_schedule",
           f"'{t.lr_schedule}' is not constant | linear | cosine")
    _check(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), source, "train.betas", "needs two values in [0, 1)")
    _check(t.max_grad_norm >= 0, source, "train.max_grad_norm", "must be >= 0 (0 = off)")
    _check(t.micro_batch_size >= 1, source, "train.micro_batch_size", "must be >= 1")
    _check(t.threads >= 0, source, "train.threads", "must be >= 0")
    _check(t.max_bad_steps >= 1, source, "train.max_bad_steps", "must be >= 1")
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
