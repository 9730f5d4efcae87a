"""Data-parallel training with torch.distributed: `torchrun --nproc_per_node N -m rlreason train CONFIG`.

Every rank runs the whole loop on its own shard of the step's prompts (whole groups stay on one rank, so
group baselines need no communication) with its own colocated engine, and trains one copy of the policy
wrapped by `wrap_model` (`train.strategy`: `ddp` = torch DDP, Li et al. 2020, arXiv 2006.15704; `fsdp2` =
`fully_shard`, PyTorch's FSDP2, after Zhao et al. 2023, arXiv 2304.11277).
The math equals one process with the same global batch because
- loss normalisers (`BatchTotals`: loss tokens, sequences) are summed over ranks before the loss
  (`global_totals`), so each rank's loss is its share of the single-process loss;
- DDP and FSDP2 *average* gradients over ranks, so each rank scales its loss by the world size
  (`loss_scale`): mean over ranks of (W * share) = sum of shares = the single-process gradient;
- advantage estimators that declare `scope="batch"` (REINFORCE batch mean, REINFORCE++ whitening, and
  any new one that says so) run on the all-gathered rewards (`global_advantages`);
- metrics are reduced (`reduce_metrics`), and only rank 0 logs, saves and prints (`is_main`).

With WORLD_SIZE unset or 1 nothing here communicates and every helper is the identity. The trainer calls
these helpers only at the lines it marks `[DIST]`; `rlreason.build` calls the set-up ones.
Example: 2 ranks, rank 0 holds 3 loss tokens and rank 1 holds 5: `global_totals` gives both num_tokens=8,
and rank 0's token-mean loss is (sum of its 3 token losses) / 8.
"""
from __future__ import annotations

import datetime
import os
from typing import Dict, Iterator, List, Sequence, Tuple, TypeVar

import torch
import torch.distributed as dist

from rlreason.algos.advantages import Estimate, Estimator
from rlreason.errors import ConfigError

T = TypeVar("T")
STRATEGIES = ("ddp", "fsdp2")


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when unset), readable before `init`."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device: str = "cpu") -> bool:
    """Join the process group from torchrun's env vars (gloo on CPU, nccl on CUDA) when WORLD_SIZE > 1.

    Returns True when running distributed. On CUDA each rank uses GPU LOCAL_RANK.
    """
    if env_world_size() <= 1:
        return False
    if dist.is_initialized():
        return True
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return True


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that logs, prints, writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce(x, op: str = "sum"):
    """sum | mean | max | min of a float or tensor over ranks (identity in one process); same type back."""
    if not active():
        return x
    t = torch.as_tensor(x, dtype=torch.float64 if not torch.is_tensor(x) else None)
    buf = t.detach().clone().to(_device())
    red = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]
    dist.all_reduce(buf, op=red)
    if op == "mean":
        buf = buf / world()
    return buf.to(t.device) if torch.is_tensor(x) else float(buf)


def all_gather_list(items: List[T]) -> List[List[T]]:
    """Every rank's list (picklable items), indexed by rank."""
    if not active():
        return [list(items)]
    out: List = [None] * world()
    dist.all_gather_object(out, list(items))
    return out


def gather(items: List[T]) -> List[T]:
    """Every rank's per-prompt list (each rank holding its `shard_prompts` share) back in the global order."""
    return unshard(all_gather_list(items))


def shard_prompts(samples: Sequence[T], rank_: int = None, world_: int = None) -> List[T]:
    """This rank's prompts: every world-th one starting at its rank (a prompt's whole group stays here).

    Example: 6 prompts, 2 ranks -> rank 0 takes [0, 2, 4], rank 1 takes [1, 3, 5].
    """
    r, w = rank() if rank_ is None else rank_, world() if world_ is None else world_
    return list(samples[r::w])


def unshard(per_rank: Sequence[Sequence[T]]) -> List[T]:
    """Inverse of `shard_prompts`: interleave the ranks' lists back into the global order."""
    w, out = len(per_rank), []
    for i in range(max((len(p) for p in per_rank), default=0)):
        out.extend(per_rank[r][i] for r in range(w) if i < len(per_rank[r]))
    return out


def global_totals(totals):
    """`BatchTotals` with num_tokens and num_seqs summed over ranks (norm_len is a constant)."""
    if not active():
        return totals
    t = all_reduce(torch.tensor([totals.num_tokens, float(totals.num_seqs)], dtype=torch.float64))
    return type(totals)(num_tokens=float(t[0]), num_seqs=int(round(float(t[1]))), norm_len=totals.norm_len)


def loss_scale() -> float:
    """Multiplier of each rank's loss before backward: DDP/FSDP2 average gradients, the loss shares must add up."""
    return float(world())


def global_advantages(est: Estimator, scores: torch.Tensor, group_size: int, algo, **kw) -> Estimate:
    """The estimate for this rank's rows; an estimator with `scope == "batch"` sees the all-gathered batch.

    `scores` [n] or [n, T]: a sequence-level batch estimator uses only the per-sequence sum, so that sum [n]
    is gathered, the estimator runs on the global [N] (ranks' rows in `unshard` order of their groups) and
    this rank's rows are cut out again. Sample- and group-scope estimators run locally (a prompt's whole
    group is on one rank). Estimators with a critic are refused under torchrun by `check_config`.
    """
    if not active() or est.scope != "batch":
        return est.estimate(scores, group_size, algo, **kw)
    valid = kw.get("valid")  # [n] bool or None (every sample valid)
    seq = scores.float().sum(-1) if scores.dim() == 2 else scores.float()  # [n]
    ok = valid.tolist() if valid is not None else [True] * len(seq)
    groups = [list(zip(g.tolist(), ok[i * group_size:(i + 1) * group_size]))  # this rank's groups
              for i, g in enumerate(seq.view(-1, group_size))]
    per_rank = all_gather_list(groups)
    glob = [x for g in unshard(per_rank) for x in g]  # [N] (reward, valid)
    adv = est(torch.tensor([r for r, _ in glob]), group_size, algo,
              valid=torch.tensor([v for _, v in glob])).view(-1, group_size)  # [N/G, G]
    owner = torch.tensor(unshard([[r] * len(p) for r, p in enumerate(per_rank)]))  # [N/G] rank of each group
    return Estimate(adv[owner == rank()].reshape(-1))  # [n], this rank's groups in their own order


def reduce_metrics(metrics: Dict[str, float], summed: Sequence[str] = ()) -> Dict[str, float]:
    """Metrics over ranks: keys in `summed` add (shares of a global normaliser), *_max max, *_min min,
    others average over the ranks that have the key (a rank with no loss tokens logs no engine metrics).

    Example, 2 ranks: {"loss/total": 0.2, "x_max": 3} and {"loss/total": 0.1, "x_max": 5}, summed=["loss/total"]
    -> {"loss/total": 0.3, "x_max": 5}.
    """
    if not active():
        return metrics
    keys = sorted({k for part in all_gather_list(sorted(metrics)) for k in part})
    out = {}
    for k in keys:
        op = "sum" if k in summed else "max" if k.endswith("_max") else "min" if k.endswith("_min") else "mean"
        have = k in metrics
        if op in ("sum", "mean"):
            total, n = all_reduce(torch.tensor([float(metrics[k]) if have else 0.0, float(have)], dtype=torch.float64))
            out[k] = float(total) if op == "sum" else float(total / n)
        else:
            neutral = float("-inf") if op == "max" else float("inf")
            out[k] = all_reduce(float(metrics[k]) if have else neutral, op)
    return out


def grad_sync(model: torch.nn.Module, on: bool) -> None:
    """DDP: all-reduce gradients only on the optimizer step's last micro-batch (set before its forward).

    FSDP2 keeps its reduce-scatter on every micro-batch (accumulating unsharded gradients would cost the
    memory FSDP2 is there to save). One process: nothing.
    """
    if type(model).__name__ == "DistributedDataParallel":
        model.require_backward_grad_sync = on


def shares(keys) -> List[str]:
    """Update metrics that are each rank's share of a global normaliser (summed over ranks by `reduce_metrics`):
    all but the gradient norm, the skipped fraction and maxima/minima."""
    return [k for k in keys if not k.endswith(("grad_norm", "skipped_frac", "_max", "_min"))]


def wrap_model(model: torch.nn.Module, strategy: str) -> torch.nn.Module:
    """The training view of `model`: DDP, or FSDP2 `fully_shard` on every decoder layer and then the root.

    In one process the model comes back unchanged. FSDP2 shards `model` in place (its parameters become
    DTensors); DDP wraps it (`.module` is the original, parameters shared).
    """
    if not active():
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.cuda.current_device()] if dist.get_backend() == "nccl" else None
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)  # buffers are constants
    if strategy == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in decoder_layers(model):
            fully_shard(layer)
        fully_shard(model)
        return model
    raise ValueError(f"train.strategy '{strategy}' is not {' | '.join(STRATEGIES)}")


def decoder_layers(model: torch.nn.Module) -> List[torch.nn.Module]:
    """The transformer blocks (`model.model.layers` for HF causal LMs), else the root's children with parameters."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is not None:
        return list(layers)
    return [m for m in model.children() if any(True for _ in m.parameters())]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under a DDP wrapper (an FSDP2 model is its own module)."""
    return getattr(model, "module", model) if type(model).__name__ == "DistributedDataParallel" else model


def iter_full_params(model: torch.nn.Module) -> Iterator[Tuple[str, torch.Tensor]]:
    """(name, full tensor) one parameter/buffer at a time: FSDP2 shards are gathered one by one (bounded memory).

    Every rank must iterate the same way (the gathers are collective).
    """
    for name, t in unwrap(model).state_dict().items():
        yield name, (t.full_tensor() if hasattr(t, "full_tensor") else t).detach()


def full_state_dict(model: torch.nn.Module, device: str = "cpu") -> Dict[str, torch.Tensor]:
    """The full (unsharded) state dict on `device`, on every rank; names as in the unwrapped model."""
    return {name: t.to(device) for name, t in iter_full_params(model)}


def load_full_into(target: torch.nn.Module, model: torch.nn.Module) -> torch.nn.Module:
    """Stream the full parameters of the training `model` into the plain module `target` (the engine's copy)."""
    with torch.no_grad():
        dst = target.state_dict()
        for name, t in iter_full_params(model):
            dst[name].copy_(t)
    return target


def split_for_engine(model: torch.nn.Module, strategy: str) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """(the engine's plain module, the training view). One process and DDP share one module; FSDP2 gives
    the engine its own full copy (made before sharding) that `engine_weights` refreshes every sync."""
    if not active() or strategy != "fsdp2":
        return model, wrap_model(model, strategy)
    import copy

    engine_model = copy.deepcopy(model)
    return engine_model, wrap_model(model, strategy)


def engine_weights(train_model: torch.nn.Module, engine_model: torch.nn.Module) -> torch.nn.Module:
    """The plain full-weight module for the engine sync and for saving (collective under FSDP2: call on every rank)."""
    if engine_model is not unwrap(train_model):
        load_full_into(engine_model, train_model)
    return engine_model


def full_optimizer_state(opt: torch.optim.Optimizer) -> dict:
    """`opt.state_dict()` with FSDP2 shards gathered to full tensors: the single-process format, loadable
    at any world size (collective under FSDP2: call on every rank)."""
    sd = opt.state_dict()  # its per-parameter dicts are the optimizer's own: build new ones
    full = lambda v: v.full_tensor().cpu() if hasattr(v, "full_tensor") else v  # noqa: E731
    return {**sd, "state": {i: {k: full(v) for k, v in st.items()} for i, st in sd["state"].items()}}


def reshard_optimizer(opt: torch.optim.Optimizer) -> None:
    """After `opt.load_state_dict(full_state)`: cut each full state tensor like its FSDP2-sharded parameter."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k, v in list(st.items()):
                if isinstance(p, DTensor) and torch.is_tensor(v) and not isinstance(v, DTensor) and v.shape == p.shape:
                    st[k] = distribute_tensor(v.to(p.device), p.device_mesh, p.placements)


def check_config(cfg, estimator: Estimator) -> None:
    """World-size rules, checked after `init` (ConfigError naming the key); `estimator` is algo.advantage's."""
    w = world()
    if w == 1:
        return
    r, a = cfg.rollout, cfg.algo
    if r.prompts_per_step % w:
        raise ConfigError(f"rollout.prompts_per_step: {r.prompts_per_step} does not split over WORLD_SIZE={w} ranks")
    if a.dynamic_sampling:
        raise ConfigError(f"algo.dynamic_sampling: not supported with WORLD_SIZE={w} > 1 yet")
    if r.max_staleness and r.engine != "hf":  # carried sources: rlreason/rollout/shards.py
        raise ConfigError(f"rollout.max_staleness: needs rollout.engine=hf (not {r.engine!r}) with WORLD_SIZE={w} > 1")
    if r.partial_tokens and r.partial_groups % w:
        raise ConfigError(f"rollout.partial_groups: {r.partial_groups} does not split over WORLD_SIZE={w} ranks")
    if cfg.model.lora.r and cfg.train.strategy == "fsdp2":
        raise ConfigError(f"model.lora.r: LoRA is not supported with train.strategy=fsdp2 and WORLD_SIZE={w} > 1 "
                          f"yet; use train.strategy=ddp (the adapters are small: DDP keeps a full copy per rank)")
    if estimator.needs_critic:
        raise ConfigError(f"algo.advantage: {a.advantage} needs a critic, which is not supported with "
                          f"WORLD_SIZE={w} > 1 yet")
    if estimator.token_level and estimator.scope == "batch":
        raise ConfigError(f"algo.advantage: {a.advantage} whitens over the batch's tokens, which is not supported "
                          f"with WORLD_SIZE={w} > 1 yet")
    if a.mini_batches > r.prompts_per_step * r.group_size // w:
        raise ConfigError(f"algo.mini_batches: {a.mini_batches} > sequences per rank "
                          f"({r.prompts_per_step * r.group_size // w})")
    check_eval_size(cfg.data.eval_size)


def check_eval_size(n: int) -> None:
    """Every rank evaluates a share of the n held-out problems, so 0 < n < WORLD_SIZE is refused."""
    if 0 < n < world():
        raise ConfigError(f"data.eval_size: {n} held-out problems for WORLD_SIZE={world()} ranks; every rank "
                          f"evaluates a share, so use at least {world()} (or 0: no eval)")


def decorrelate(seed: int, step: int) -> None:
    """Ranks > 0 get their own torch stream for sampling (rank 0 keeps the single-process one)."""
    if rank() > 0:
        torch.manual_seed(seed * 1_000_003 + rank() * 7919 + step)


def gather_scored(scored):
    """Every rank's ScoredRollout concatenated (for step metrics over the global batch)."""
    if not active():
        return scored
    return type(scored).concat([x[0] for x in all_gather_list([scored])])


class Quiet:
    """The logger of ranks > 0: every method does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None
