"""The config schema: dataclasses with one docstring per field (DESIGN.md, "Config").

Loading lives in `rlreason/config_load.py` (OmegaConf merges schema <- YAML file <- `key=value`
overrides, rejecting unknown keys and wrong types) and the cross-field rules in
`rlreason/config_validate.py`. Both run before any model loads and raise `ConfigError` with a one-line
message that names the key and the file. This file imports nothing from the project but
`rlreason.errors`: it is the bottom layer every module may read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from rlreason.errors import ConfigError  # noqa: F401  (re-exported: callers of the schema catch it)


@dataclass
class RunConfig:
    name: str = ""
    """Run name; the run directory is `<root>/<name>`. '' = a new directory `run-YYYYmmdd-HHMMSS` for every run, with `<root>/latest` linking to it."""
    root: str = "runs"
    """Parent folder of run directories."""
    seed: int = 0
    """Seed for torch, sampling and the data order."""
    overwrite: bool = False
    """Replace an existing run directory: everything in it but train.log is deleted first (a checkpoint to resume with run.resume=auto takes precedence)."""
    resume: str = ""
    """'' = fresh run; 'auto' = continue from the newest complete checkpoint in the run directory (an unfinished run without one starts again); or a checkpoint folder."""
    allow_config_change: bool = False
    """Resume even when settings other than steps, eval, logging and checkpointing differ from the checkpoint's config."""
    save_on_signal: bool = True
    """On SIGINT/SIGTERM, finish the current step and save a checkpoint before stopping (false: stop without one)."""
    save_every: int = 0
    """Write a checkpoint every N steps (0 = none; the final model is always saved)."""
    keep_last: int = 2
    """Checkpoints kept (older ones are deleted after a new one is complete)."""


@dataclass
class LoraConfig:
    r: int = 0
    """LoRA rank: > 0 trains low-rank adapters (PEFT) on a frozen base model instead of every weight; 0 = off (full fine-tuning). Needs `pip install 'rlreason[lora]'`."""
    alpha: float = 32.0
    """LoRA scale numerator: an adapter adds (alpha / r) * B A to its weight."""
    dropout: float = 0.0
    """Dropout on the adapters' input in the trainer's forward passes (> 0 puts the policy in training mode; engines sample without it)."""
    target_modules: List[str] = field(default_factory=lambda: ["all-linear"])
    """Modules that get adapters, by name suffix (e.g. [q_proj, v_proj]); [all-linear] = every linear layer but the output head."""
    save_merged: bool = False
    """final/ holds the base model with the adapter merged in (a plain model, in model.dtype) instead of the adapter alone (`rlreason export --merge` does it later)."""


@dataclass
class ModelConfig:
    path: str = "models/tiny-reasoner"
    """HF model id or local folder. Relative paths are tried from the working directory, then from the repo root."""
    dtype: str = "float32"
    """float32 | bfloat16. bfloat16: fp32 master weights and optimizer state, bf16 compute (autocast) for rollout and update; final/ saved in bf16."""
    fp32_head: bool = False
    """Compute the LM head's output in fp32 under bfloat16 autocast (less engine-trainer log-prob mismatch)."""
    device: str = "auto"
    """cpu | cuda | auto (cuda when available)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory (79M model on CPU: training peak -28%, update +29% time; benchmarks/checkpointing.md)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters (r = 0: off)."""


@dataclass
class DataConfig:
    task: str = "arithmetic"
    """Task name (`rlreason list` shows the registered tasks), or the import path of your own Task subclass: 'my_pkg.tasks:MyTask' or 'path/file.py:MyTask'."""
    params: Dict[str, Any] = field(default_factory=dict)
    """Task-specific parameters, e.g. for arithmetic {min_digits: 1, max_digits: 2, max_operands: 3}."""
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
    """A bad data row (text not UTF-8, missing or blank field, unparsable answer, over-long prompt): error (name file and line) | skip (count, log once)."""
    max_prompt_tokens: int = 0
    """Prompts longer than this many tokens (after the template) are bad rows, checked at load for file tasks (0 = the model's context minus rollout.max_new_tokens, -1 = no limit)."""


@dataclass
class RolloutConfig:
    engine: str = "hf"
    """Rollout engine: hf (the policy model, our own KV-cached decoding loop) | vllm (colocated vLLM) | auto (vllm when it imports and CUDA is present, else hf)."""
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
    tools: List[str] = field(default_factory=list)
    """Tools the model may call mid-thought: [python] runs each closed ```python block in the sandbox and appends its ```output block (docs/tools.md; ToRL arXiv 2503.23383); [] = none."""
    max_tool_calls: int = 4
    """rollout.tools: tool calls per completion at most; later code blocks stay plain text."""
    tool_timeout_s: float = 5.0
    """rollout.tools: wall-clock limit of one call (also its CPU-seconds limit, rounded up); a call past it shows a TimeoutError."""
    tool_memory_mb: int = 512
    """rollout.tools: memory limit of one call's sandbox (all its processes)."""
    tool_output_chars: int = 512
    """rollout.tools: characters of a call's output shown to the model (at most 65536); the rest is cut with a note."""
    tool_workers: int = 2
    """rollout.tools: sandboxes run at once for the calls of one decoding round."""
    tool_step_budget_s: float = 120.0
    """rollout.tools: wall seconds one generate() call (a step's rollout round, or an evaluation) may spend in tools; once spent, further calls fail at once as timeouts (rollout/tool_budget_exhausted), running ones finish within tool_timeout_s (0 = no limit)."""
    partial_tokens: int = 0
    """Partial rollouts (Kimi k1.5 arXiv 2501.12599 §2.2; hf and vllm engines): each generation round gives every unfinished sample at most this many new tokens, and unfinished samples are carried to the next step and continued with the newer weights, so no step waits for its longest answer (0 = off: each step generates its prompts to the end)."""
    partial_max_steps: int = 4
    """rollout.partial_tokens: steps a sample may be generated over; one still unfinished then ends as truncated, so no trained token is more than this many policy versions old."""
    partial_groups: int = 0
    """rollout.partial_tokens: prompt groups kept in flight in every generation round (0 = prompts_per_step); more finish a step's groups in fewer rounds where extra rows are cheap (a GPU), with older tokens."""
    max_staleness: int = 0
    """Asynchronous rollouts: each step's rollout is generated this many policy versions behind, on a background thread (hf: on its own copy of the weights; vllm: the one engine, taken in turns with evals), while the trainer updates (AReaL arXiv 2505.24298); 0 = synchronous."""


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
class TeacherConfig:
    path: str = ""
    """On-policy distillation (GKD, arXiv 2306.13649): the teacher model, HF id or folder with the policy's tokenizer, loaded frozen in the policy's precision; '' = off (no teacher is loaded)."""
    coef: float = 1.0
    """Weight of the teacher's per-token term coef * (log pi_teacher - log pi_student) added to each response token's advantage (> 0)."""
    only: bool = False
    """Distillation alone: the reward's advantage is set to 0 and the teacher's term is the whole advantage (rewards are still scored and logged)."""


@dataclass
class AlgoConfig:
    advantage: str = "grpo"
    """Advantage estimator (registry `advantage`)."""
    std_normalize: bool = True
    """grpo: divide by the group's standard deviation (ddof: std_ddof)."""
    adv_eps: float = 1e-6
    """Added to the std before dividing."""
    std_ddof: int = 1
    """ddof of every std an advantage estimator divides by (grpo's group std; the whitening of reinforce_pp*, gae): 1 = Bessel's correction (TRL, verl), 0 = population std."""
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
    """Truncated importance sampling: weight each token's loss by min(pi_trainer/pi_engine, tis_cap) (0 = off); the older spelling of is_mode=token_truncate with is_cap=tis_cap."""
    is_mode: str = "none"
    """Off-policy correction (registry `is_mode`): weight each token's policy loss by pi_trainer/pi_behaviour, the behaviour log-probs being those the token was sampled with, per token or per sequence, truncated or masked to [is_min, is_cap]: none | token_truncate | token_mask | sequence_truncate | sequence_mask (TRL's vllm_importance_sampling_mode)."""
    is_cap: float = 3.0
    """is_mode upper bound C_max (>= 1): *_truncate clamps the ratio to it, *_mask gives weight 0 above it (TRL's default 3)."""
    is_min: float = 0.0
    """is_mode lower bound C_min (in [0, 1], 0 = none): *_truncate clamps the ratio to it, *_mask gives weight 0 below it (IcePop: is_min 0.5, is_cap 5)."""
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
    cispo_eps_low: float = 1.0
    """cispo loss: the importance weight's lower bound is 1 - cispo_eps_low (1.0 = bound 0: none, as MiniMax-M1)."""
    cispo_eps_high: float = 4.0
    """cispo loss: the importance weight's upper bound is 1 + cispo_eps_high (4.0: weight <= 5, TRL's epsilon_high=5.0)."""
    pass_k: int = 1
    """pass_at_k advantage: k, the size of the sample subsets whose best reward is optimised (1 = GRPO; < rollout.group_size)."""
    top_entropy_quantile: float = 1.0
    """Policy gradient only on the step's highest-entropy response tokens, this fraction of them (0.2: top 20%; 1.0 = off)."""
    gamma: float = 1.0
    """gae: discount over response tokens."""
    lam: float = 0.95
    """gae: lambda of generalised advantage estimation."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """The value model, used only by advantage gae."""
    kl: KLConfig = field(default_factory=KLConfig)
    """KL penalty against the initial policy."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """On-policy distillation from a frozen teacher (path '' = off)."""


@dataclass
class RewardTerm:
    name: str = "math_answer"
    """Reward term name (`rlreason list`), or the import path of your own function: 'my_pkg.rewards:my_fn' or 'path/file.py:my_fn'."""
    weight: float = 1.0
    """Weight in the summed reward."""
    params: Dict[str, Any] = field(default_factory=dict)
    """Term-specific parameters."""


@dataclass
class MixtureEntry:
    task: str = "arithmetic"
    """Task name (`rlreason list`) or an import path 'module:Class' of a Task subclass."""
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
    """Sequences per forward/backward at most; gradients accumulate to the full step."""
    micro_batch_tokens: int = 1024
    """Token budget of a micro-batch: rows are taken longest first and a micro-batch holds at most this many padded tokens (rows x its longest sequence), so short sequences are not padded to the step's longest; 0 = off (micro_batch_size rows in rollout order). Raise it on a GPU."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    max_bad_steps: int = 3
    """Stop the run after this many consecutive steps with a non-finite loss or gradient (such steps are skipped)."""
    strategy: str = "ddp"
    """Data parallelism under torchrun (WORLD_SIZE > 1; ignored in one process): ddp | fsdp2 (fully_shard per decoder layer)."""


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
    """Show progress: a redrawing bar on a terminal; when stdout is not a terminal (a file, a pipe), plain lines every log.progress_every steps."""
    progress_every: int = 0
    """When stdout is not a terminal: a plain progress line (reward, accuracy, length, s/step, time left) at the first step, every N steps and the last (0 = about 20 lines a run: every ceil(train.steps / 20) steps)."""
    print_every: int = 0
    """Also print one line of every metric every N steps (0 = never)."""
    verbose: bool = False
    """Show third-party progress bars and warnings (transformers' loading/saving bars, vLLM's, the HF hub's and torch's warnings); false keeps only their errors."""
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
    rewards_on_error: str = "mask"
    """A sample whose reward check could not run (outcome timeout or error, e.g. the math verifier's time limit or a sandbox that failed to start): mask = leave it out of the update and of its group's baseline; zero = train on it with reward 0 (the peers' behaviour). Counted as reward/<term>/unchecked either way."""
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)

