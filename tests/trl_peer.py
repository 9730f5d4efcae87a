"""Peer harness: TRL 1.16's GRPOTrainer and rlreason's update on identical inputs (tests/test_peer_trl.py).

TRL's side runs TRL's own code: `_generate_and_score_completions` (rewards -> advantages, the old and
reference log-probs, the vLLM importance-sampling ratio) and `_compute_loss` (the loss and its backward).
Only what lies outside the loss is stubbed: generation returns fixed completions, the reward function
returns fixed rewards, and the model returns log-probs computed from a fixed logits tensor, the way
TRL's fused LM head does (log p(token t+1 | <= t), 0 where the label is masked).

Our side runs `rlreason.update.update_policy` (the trainer's stage 6) on one optimizer step of one
micro-batch, with a model whose only parameter is the same logits tensor, after the configured advantage
estimator (`ADVANTAGES`) turned the same rewards into advantages.

Both sides give (advantages, loss, d loss / d logits); `compare` returns the pair. To add a peer test for
a new option: build a `Case` (or use `make_case`), then `compare(case, trl={GRPOConfig field: value},
ours=["algo.key=value", ...])` and assert on `max_abs_diff`. Layout: every prompt has P tokens (TRL
left-pads prompts, so equal lengths keep both layouts identical); completions are right-padded to T.
"""
from __future__ import annotations

import contextlib
import tempfile
from collections import defaultdict
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

import torch

from rlreason.algos import ADVANTAGES
from rlreason.config_load import load_config
from rlreason.types import TrainBatch
from rlreason.update import update_policy


@dataclass(frozen=True)
class Case:
    """One micro-batch: N = groups * G rows of P prompt tokens and right-padded completions."""

    ids: torch.Tensor  # [N, P + T] long, prompt then completion then padding (pad id 0)
    lengths: torch.Tensor  # [N] completion lengths (1..T)
    prompt_len: int  # P
    rewards: torch.Tensor  # [N] float32
    group_size: int  # G
    logits: torch.Tensor  # [N, P + T, V] the policy's logits (the tensor both sides differentiate)
    ref_logits: torch.Tensor  # [N, P + T, V] the frozen reference's logits
    old_shift: Optional[torch.Tensor] = None  # [N, T] old log-probs = current - shift (off-policy); None: on-policy
    engine_shift: Optional[torch.Tensor] = None  # [N, T] engine log-probs = old - shift (engine/trainer mismatch)

    @property
    def T(self) -> int:
        return self.ids.shape[1] - self.prompt_len

    @property
    def completion_mask(self) -> torch.Tensor:  # [N, T]
        return (torch.arange(self.T)[None, :] < self.lengths[:, None]).float()


def make_case(seed: int = 0, groups: int = 2, G: int = 4, P: int = 3, T: int = 6, V: int = 11,
              rewards: Optional[Sequence[float]] = None, off_policy: float = 0.0, engine_noise: float = 0.0) -> Case:
    """A random case; `off_policy` > 0 moves the old log-probs away (ratios leave 1, clipping engages),
    `engine_noise` > 0 makes the engine's log-probs differ from the trainer's (for TIS)."""
    g = torch.Generator().manual_seed(seed)
    N = groups * G
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    lengths[0] = T  # one full-length row: both sides see the same padded width
    ids = torch.randint(1, V, (N, P + T), generator=g)
    ids[:, P:] *= (torch.arange(T)[None, :] < lengths[:, None]).long()  # padding id 0
    r = torch.tensor(rewards, dtype=torch.float32) if rewards is not None else \
        torch.randint(0, 3, (N,), generator=g).float() * 0.5
    old_shift = off_policy * torch.randn(N, T, generator=g) if off_policy else None
    engine_shift = engine_noise * torch.randn(N, T, generator=g) if engine_noise else None
    return Case(ids, lengths, P, r, G, torch.randn(N, P + T, V, generator=g),
                torch.randn(N, P + T, V, generator=g), old_shift, engine_shift)


@dataclass
class Side:
    """What one implementation gives for a case."""

    advantages: torch.Tensor  # [N] (or [N, T])
    loss: float
    grad: torch.Tensor  # [N, P + T, V] d loss / d logits


def max_abs_diff(a, b) -> float:
    return float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max())


def _label_logprobs(logits: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor):
    """As TRL's fused head: [B, L-1] log p(ids[:, t+1] | <= t) and the entropy there, 0 where labels[:, t+1] = -100."""
    logp_all = torch.log_softmax(logits[:, :-1].float(), -1)
    logp = logp_all.gather(-1, ids[:, 1:, None]).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1)
    keep = labels[:, 1:] != -100
    return logp.masked_fill(~keep, 0.0), ent.masked_fill(~keep, 0.0)


class _TRLModel(torch.nn.Module):
    """Stands in for a model patched by TRL's `add_fused_lm_head`: fixed logits in, log-probs out."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.is_gradient_checkpointing = False

    def forward(self, input_ids, attention_mask, labels=None, fused_lm_head=True, **_):
        assert fused_lm_head and input_ids.shape == self.logits.shape[:2]
        logp, ent = _label_logprobs(self.logits, input_ids, labels)
        return SimpleNamespace(log_probs=logp, entropy=ent)


class _Accelerator:
    """One process on CPU: what the trainer asks of accelerate's Accelerator."""

    device = torch.device("cpu")
    process_index, num_processes, sync_gradients, is_main_process = 0, 1, True, True

    def gather(self, x):
        return x

    def reduce(self, x, reduction="sum"):
        return x

    def unwrap_model(self, m):
        return m

    def autocast(self):
        return contextlib.nullcontext()


def _trl_trainer(case: Case, policy: _TRLModel, args) -> object:
    """A GRPOTrainer without __init__: the attributes __init__ derives from `args`, and stubs for generation
    and rewards (the parts outside what is compared)."""
    from trl import GRPOTrainer

    t = object.__new__(GRPOTrainer)
    N, P = case.ids.shape[0], case.prompt_len
    for name in ("pad_to_multiple_of", "use_vllm", "vllm_importance_sampling_correction",
                 "vllm_importance_sampling_mode", "vllm_importance_sampling_clip_max",
                 "vllm_importance_sampling_clip_min", "loss_type", "multi_objective_aggregation", "scale_rewards",
                 "importance_sampling_level", "off_policy_mask_threshold", "mask_truncated_completions",
                 "top_entropy_quantile", "entropy_coef", "use_adaptive_entropy", "num_iterations", "beta",
                 "max_completion_length", "num_generations"):
        setattr(t, name, getattr(args, name))
    t.args, t.model, t.accelerator = args, policy, _Accelerator()
    t.ref_model = _TRLModel(case.ref_logits) if args.beta != 0 else None
    t.epsilon_low = args.epsilon
    t.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
    t._entropy_bonus_enabled = args.entropy_coef != 0.0 or args.use_adaptive_entropy
    t.aux_loss_enabled, t.current_gradient_accumulation_steps = False, 1
    t.environment_factories, t.tools, t.environments, t.log_multimodal = None, None, [], False
    t._tokenizer = SimpleNamespace(pad_token_id=0)
    t.eos_token_ids = []
    t.reward_func_names, t.reward_weights = ["fixed"], torch.ones(1)
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    t._logs = {"prompt": [], "completion": [], "rewards": defaultdict(list), "advantages": [],
               "extra": defaultdict(list), "images": []}
    t._pending_extra_logs, t._pending_metrics = {}, {}
    completions = [case.ids[i, P:P + int(case.lengths[i])].tolist() for i in range(N)]
    sampling = None
    if args.use_vllm:  # the engine's log-probs: the trainer's (pre-update) ones minus the mismatch
        lp = _pre_update_completion_logp(case)
        sampling = [(lp[i] - case.engine_shift[i])[: int(case.lengths[i])].tolist() for i in range(N)]
    t._generate = lambda prompts: ([case.ids[i, :P].tolist() for i in range(N)], completions, None,
                                   ["c"] * N, sampling, {}, None, None)
    t._calculate_rewards = lambda inputs, prompts, completions, ids: case.rewards[:, None].clone()
    return t


def _pre_update_completion_logp(case: Case) -> torch.Tensor:
    """[N, T] log-probs of the completion tokens under the logits (the trainer's pre-update log-probs)."""
    labels = case.ids.clone()
    labels[:, : case.prompt_len] = -100
    with torch.no_grad():
        return _label_logprobs(case.logits, case.ids, labels)[0][:, -case.T:] * case.completion_mask


def trl_side(case: Case, **config) -> Side:
    """TRL's advantages, loss and gradient for `case` under GRPOConfig(**config)."""
    from trl import GRPOConfig

    N = case.ids.shape[0]
    base = dict(output_dir=tempfile.gettempdir(), use_cpu=True, report_to="none", num_generations=case.group_size,
                per_device_train_batch_size=N, max_completion_length=case.T, beta=0.0, use_bias_correction_kl=False,
                vllm_importance_sampling_correction=False)
    args = GRPOConfig(**{**base, **config})
    logits = case.logits.clone().requires_grad_(True)
    policy = _TRLModel(logits)
    trainer = _trl_trainer(case, policy, args)
    out = trainer._generate_and_score_completions([{"prompt": "p"}] * N)
    if case.old_shift is not None:  # as after an earlier optimizer step on this generation batch
        out["old_per_token_logps"] = _pre_update_completion_logp(case) - case.old_shift * case.completion_mask
    loss = trainer._compute_loss(policy, out)
    loss.backward()
    return Side(out["advantages"].detach(), float(loss.detach()), logits.grad)


class _OurModel(torch.nn.Module):
    """A 'model' whose only parameter is the logits: forward returns them for the rows of the batch."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, input_ids, attention_mask=None, **_):
        assert input_ids.shape == self.logits.shape[:2], "one micro-batch of every row, in order"
        return SimpleNamespace(logits=self.logits)


def our_batch(case: Case, advantages: torch.Tensor, ref_logp: Optional[torch.Tensor]) -> TrainBatch:
    """The case as the trainer's TrainBatch (log-prob at t scores token t; loss mask on completion tokens)."""
    N, P = case.ids.shape[0], case.prompt_len
    loss_mask = torch.cat([torch.zeros(N, P), case.completion_mask], 1)
    attn = torch.cat([torch.ones(N, P), case.completion_mask], 1).long()
    current = torch.cat([torch.zeros(N, P), _pre_update_completion_logp(case)], 1)
    shift = torch.zeros_like(current) if case.old_shift is None else torch.cat([torch.zeros(N, P), case.old_shift], 1)
    return TrainBatch(input_ids=case.ids, attention_mask=attn, loss_mask=loss_mask, old_logp=(current - shift) * loss_mask,
                      advantages=advantages, ref_logp=ref_logp)


def our_side(case: Case, overrides: List[str]) -> Side:
    """rlreason's advantages (the configured estimator) and one update_policy step's loss and gradient."""
    N = case.ids.shape[0]
    cfg = load_config(None, [f"rollout.group_size={case.group_size}", f"rollout.max_new_tokens={case.T}",
                             f"train.micro_batch_size={N}", "train.micro_batch_tokens=0", "train.max_grad_norm=0",
                             *overrides])
    adv = ADVANTAGES.get(cfg.algo.advantage)(case.rewards, case.group_size, cfg.algo)
    ref_logp = None
    if cfg.algo.kl.coef > 0:
        ref = replace(case, logits=case.ref_logits)
        ref_logp = torch.cat([torch.zeros(N, case.prompt_len), _pre_update_completion_logp(ref)], 1)
    batch = our_batch(case, adv, ref_logp)
    engine = batch.old_logp.clone()
    if case.engine_shift is not None:
        engine[:, case.prompt_len:] -= case.engine_shift * case.completion_mask
    if case.old_shift is not None:  # off-policy: `old_logp` is used only when there is more than one update
        cfg.algo.ppo_epochs = 2
    model = _OurModel(case.logits)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = update_policy(model, opt, batch, cfg, engine, plan=[[torch.arange(N)]])  # one step, one micro-batch
    return Side(adv, stats["loss/total"], model.logits.grad)


def compare(case: Case, trl: Dict, ours: List[str]):
    """(TRL's Side, our Side) for the same case."""
    return trl_side(case, **trl), our_side(case, ours)
