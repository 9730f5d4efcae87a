"""Data-parallel update on CPU with gloo, 2 processes: same loss and parameters as one process with the global batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from rlreason import distributed
from rlreason.algos import ADVANTAGES, BatchTotals
from rlreason.algos.advantages import estimator, sequence_rewards
from rlreason.config import Config
from rlreason.types import TrainBatch

G = 2  # group size
PROMPTS = 4
REWARDS = [1.0, 0, 0, 1, 1, 1, 1, 0]  # 4 groups of 2
MEDIAN = "_test_batch_median"
VALID = [True, True, False, True, True, True, True, False]  # two samples whose reward check could not run


def _batch_median(rewards: torch.Tensor, group_size: int, cfg, values=None, mask=None, valid=None) -> torch.Tensor:
    """A throw-away estimator with a batch statistic: A = r - (lower) median of the whole batch.

    With REWARDS the global median is 1, but rank 1's rows alone ([0, 1, 1, 0]) have median 0: computed per
    rank it would give other numbers.
    """
    r = sequence_rewards(rewards)
    return r - r.median()


def _register_median() -> None:
    """What a user writes to add it: one decorated function (no other file changes)."""
    if MEDIAN not in ADVANTAGES:
        estimator(MEDIAN, scope="batch")(_batch_median)


def _batch_scope() -> list:
    """Every registered estimator that declares a batch statistic (and needs no critic), plus grpo."""
    return [n for n in ADVANTAGES if ADVANTAGES.get(n).scope == "batch" and not ADVANTAGES.get(n).needs_critic
            and not ADVANTAGES.get(n).token_level] + ["grpo"]


def _fixed_batch(vocab: int) -> TrainBatch:
    """8 right-padded sequences (4 groups of 2) with completions of different lengths and fixed advantages."""
    g = torch.Generator().manual_seed(1)
    N, T = PROMPTS * G, 12
    ids = torch.randint(10, vocab, (N, T), generator=g)
    attn, mask = torch.zeros(N, T, dtype=torch.long), torch.zeros(N, T)
    for i in range(N):
        length = 6 + (i * 5) % 7  # 6..12 tokens, prompt is the first 4
        attn[i, :length], mask[i, 4:length] = 1, 1
    adv = torch.randn(N, generator=g)
    return TrainBatch(input_ids=ids, attention_mask=attn, loss_mask=mask, old_logp=torch.zeros(N, T), advantages=adv)


def _rows_of(rank: int, world: int) -> torch.Tensor:
    """Rows of this rank's groups under `shard_prompts` (every world-th prompt)."""
    groups = distributed.shard_prompts(list(range(PROMPTS)), rank, world)
    return torch.tensor([g * G + j for g in groups for j in range(G)])


def _cfg() -> Config:
    cfg = Config()
    cfg.train.lr, cfg.train.micro_batch_size, cfg.train.max_grad_norm = 1e-2, 3, 1.0
    cfg.algo.loss_agg = "token_mean"
    return cfg


def _update(model_dir: str, batch: TrainBatch, strategy: str):
    """One update_policy step; returns (metrics reduced over ranks, full state dict)."""
    from rlreason.policy import load_model
    from rlreason.update import update_policy

    torch.manual_seed(0)
    model = distributed.wrap_model(load_model(model_dir, "float32", "cpu")[0], strategy)
    opt = torch.optim.AdamW(model.parameters(), lr=_cfg().train.lr)
    stats = update_policy(model, opt, batch, _cfg(), torch.zeros_like(batch.old_logp))
    summed = distributed.shares(stats)
    return distributed.reduce_metrics(stats, summed), distributed.full_state_dict(model)


def _worker(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    assert distributed.init("cpu") and distributed.world() == world
    from rlreason.policy import load_model

    vocab = load_model(model_dir, "float32", "cpu")[0].config.vocab_size
    batch = _fixed_batch(vocab).select(_rows_of(rank, world))
    result = {s: _update(model_dir, batch, s) for s in ("fsdp2", "ddp")}
    rewards = torch.tensor(REWARDS)[_rows_of(rank, world)]
    result["adv"] = {name: distributed.global_advantages(ADVANTAGES.get(name), rewards, G, _cfg().algo).advantages
                     for name in _batch_scope()}
    result["rows"] = _rows_of(rank, world)
    own = {"loss/total": 0.1 * (rank + 1), "x_max": 3.0 + 2 * rank, "t": 1.0 + rank}
    result["metrics"] = distributed.reduce_metrics({**own, **({"only0_mean": 4.0} if rank == 0 else {})},
                                                   summed=["loss/total"])
    result["totals"] = distributed.global_totals(BatchTotals.of(batch.loss_mask))
    torch.save(result, f"{out}/rank{rank}.pt")
    distributed.close()


def _adv_worker(rank: int, world: int, port: int, out: str) -> None:
    """Advantages of this rank's rows for every batch-scope estimator, the throw-away one included."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    _register_median()
    assert distributed.init("cpu")
    rows = _rows_of(rank, world)
    adv = {name: distributed.global_advantages(ADVANTAGES.get(name), torch.tensor(REWARDS)[rows], G,
                                               _cfg().algo).advantages for name in _batch_scope()}
    masked = {name: distributed.global_advantages(ADVANTAGES.get(name), torch.tensor(REWARDS)[rows], G, _cfg().algo,
                                                  valid=torch.tensor(VALID)[rows]).advantages
              for name in _batch_scope() if name != MEDIAN}
    torch.save({"rows": rows, "adv": adv, "masked": masked}, f"{out}/adv{rank}.pt")
    distributed.close()


def test_a_new_batch_estimator_is_computed_on_the_global_batch_under_two_ranks(tmp_path):
    """Adding an estimator with a batch statistic is one function: its declared scope makes `distributed`
    gather the batch, so each of 2 gloo ranks holds its rows of the single-process estimate."""
    _register_median()
    try:
        assert MEDIAN in _batch_scope()
        mp.spawn(_adv_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
        ranks = [torch.load(tmp_path / f"adv{r}.pt", weights_only=False) for r in range(2)]
        for name in _batch_scope():
            full = ADVANTAGES.get(name)(torch.tensor(REWARDS), G, _cfg().algo)
            for res in ranks:
                torch.testing.assert_close(res["adv"][name], full[res["rows"]], msg=name)
            if name != MEDIAN:  # samples not valid are left out of the gathered statistics too
                full = ADVANTAGES.get(name)(torch.tensor(REWARDS), G, _cfg().algo, valid=torch.tensor(VALID))
                for res in ranks:
                    torch.testing.assert_close(res["masked"][name], full[res["rows"]], msg=f"{name} with valid")
        local = _batch_median(torch.tensor(REWARDS)[ranks[1]["rows"]], G, None)  # what rank 1 alone would give
        assert not torch.equal(local, ranks[1]["adv"][MEDIAN])
    finally:
        ADVANTAGES.unregister(MEDIAN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_train(args, cwd, ranks: int = 2, timeout: int = 600):
    """`rlreason train ARGS` under torchrun with `ranks` CPU processes (1 thread each; ranks=1: a plain process);
    the finished process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_port",
                str(_free_port())] if ranks > 1 else [sys.executable]
    return subprocess.run(launcher + ["-m", "rlreason", "train"] + list(args), cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_shard_and_unshard_round_trip():
    parts = [distributed.shard_prompts(list(range(7)), r, 3) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert distributed.unshard(parts) == list(range(7))


def test_single_process_helpers_are_identity(tiny):
    model = tiny[0]
    assert not distributed.active() and distributed.world() == 1 and distributed.is_main()
    assert distributed.wrap_model(model, "fsdp2") is model and distributed.all_reduce(2.5) == 2.5
    assert distributed.loss_scale() == 1.0
    sd = distributed.full_state_dict(model)
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_two_ranks_match_one_process(tiny_model_dir, tmp_path):
    """FSDP2 and DDP on gloo with 2 ranks: loss, metrics and updated parameters equal one process on the whole batch."""
    from rlreason.policy import load_model

    torch.set_num_threads(1)
    vocab = load_model(tiny_model_dir, "float32", "cpu")[0].config.vocab_size
    whole = _fixed_batch(vocab)
    ref_stats, ref_params = _update(tiny_model_dir, whole, "ddp")  # one process: wrap_model is the identity
    before = load_model(tiny_model_dir, "float32", "cpu")[0].state_dict()
    assert float((ref_params["model.norm.weight"] - before["model.norm.weight"]).abs().max()) > 1e-4  # it moved

    mp.spawn(_worker, args=(2, _free_port(), tiny_model_dir, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for strategy in ("fsdp2", "ddp"):
        for res in ranks:
            stats, params = res[strategy]
            for key in ("loss/total", "loss/policy", "policy/entropy", "policy/grad_norm"):
                assert stats[key] == pytest.approx(ref_stats[key], rel=1e-4, abs=1e-6), (strategy, key)
            assert params.keys() == ref_params.keys()
            for k in params:
                torch.testing.assert_close(params[k], ref_params[k], rtol=1e-4, atol=1e-5, msg=f"{strategy} {k}")
    # batch-level advantages: every rank holds its rows of the global estimate
    rewards = torch.tensor(REWARDS)
    for name in _batch_scope():
        full = ADVANTAGES.get(name)(rewards, G, _cfg().algo)
        for res in ranks:
            torch.testing.assert_close(res["adv"][name], full[res["rows"]], msg=name)
    for res in ranks:  # sums, maxima, means; a key only rank 0 has averages over rank 0 alone
        assert res["metrics"] == pytest.approx({"loss/total": 0.3, "x_max": 5.0, "t": 1.5, "only0_mean": 4.0})
    assert ranks[0]["totals"].num_tokens == ranks[1]["totals"].num_tokens == float(whole.loss_mask.sum())
    assert ranks[0]["totals"].num_seqs == len(whole)


@pytest.mark.slow
def test_torchrun_two_ranks_train_checkpoint_and_resume_alone(tmp_path):
    """`torchrun --nproc_per_node 2 -m rlreason train` (FSDP2, gloo): 2 steps, one full checkpoint per step written
    by rank 0, then one process resumes it for a third step (resume across world sizes)."""
    import json

    from rlreason.policy import REPO_ROOT

    args = ["configs/default.yaml", f"run.root={tmp_path}", "run.name=dp", "rollout.prompts_per_step=4",
            "rollout.group_size=2", "rollout.max_new_tokens=12", "train.threads=1", "data.eval_size=4",
            "run.save_every=1", "log.progress=false", "train.strategy=fsdp2", "train.lr=1e-3"]
    done = torchrun_train(args + ["train.steps=2"], REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "dp"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000001", "step_00000002"]
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss/total" in r] == [1, 2]  # rank 0 alone logged, once per step
    assert all(r["rollout/generated_tokens"] > 0 for r in steps if "loss/total" in r)
    assert [r["eval/size"] for r in steps if "eval/size" in r] == [4, 4]  # both ranks' shares, before and after
    state = torch.load(run / "checkpoints" / "step_00000002" / "state.pt", weights_only=False)
    from rlreason.policy import load_model

    saved = load_model(str(run / "checkpoints" / "step_00000002" / "model"), "float32", "cpu")[0]
    shapes = [tuple(p.shape) for p in saved.parameters()]
    assert [tuple(s["exp_avg"].shape) for _, s in sorted(state["opt"]["state"].items())] == shapes  # full, unsharded
    again = torchrun_train(args + ["train.steps=3", "run.resume=auto"], REPO_ROOT, ranks=1)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stdout + again.stderr
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [s for s in steps if s > 0][-1] == 3 and (run / "checkpoints" / "step_00000003" / "COMPLETE").is_file()


def test_world_size_rules_and_strategy_name(monkeypatch):
    from rlreason.errors import ConfigError
    from rlreason.config_load import load_config

    def check(cfg):
        distributed.check_config(cfg, ADVANTAGES.get(cfg.algo.advantage))

    with pytest.raises(ConfigError, match="train.strategy: 'zero' is not ddp | fsdp2"):
        load_config(None, ["train.strategy=zero"])
    monkeypatch.setattr(distributed, "world", lambda: 3)
    with pytest.raises(ConfigError, match="rollout.prompts_per_step: 4 does not split over WORLD_SIZE=3"):
        check(load_config(None, ["rollout.prompts_per_step=4"]))
    with pytest.raises(ConfigError, match="algo.dynamic_sampling"):
        check(load_config(None, ["rollout.prompts_per_step=6", "algo.dynamic_sampling=true"]))
    for key in ("rollout.partial_tokens=64", "rollout.max_staleness=1"):  # carried / ahead rollouts: hf engine
        check(load_config(None, ["rollout.prompts_per_step=6", key]))  # (more in test_rollout_shards.py)
    with pytest.raises(ConfigError, match="data.eval_size: 2 held-out problems for WORLD_SIZE=3 ranks"):
        check(load_config(None, ["rollout.prompts_per_step=6", "data.eval_size=2"]))
    check(load_config(None, ["rollout.prompts_per_step=6", "data.eval_size=0"]))  # no eval
    check(load_config(None, ["rollout.prompts_per_step=6"]))  # fine
    with pytest.raises(ConfigError, match="algo.advantage: gae needs a critic"):  # read from the estimator's traits
        check(load_config(None, ["rollout.prompts_per_step=6", "algo.advantage=gae"]))
    with pytest.raises(ConfigError, match="algo.advantage: reinforce_pp whitens over the batch's tokens"):
        check(load_config(None, ["rollout.prompts_per_step=6", "algo.advantage=reinforce_pp"]))
    check(load_config(None, ["rollout.prompts_per_step=6", "algo.advantage=reinforce_pp_seq"]))  # sequence-level: fine


def test_even_counts_splits_the_fewest_micro_batches_up_to_the_most_over_ranks(monkeypatch):
    """Another rank cut its rows into 4 and 2 micro-batches where this one has 2 and 2: this rank splits its
    largest micro-batch of the first step, keeping every row once and every micro-batch within its budget."""
    from rlreason.update import even_counts, micro_batches

    lengths = torch.tensor([30, 28, 10, 9, 8, 7, 31, 5])
    steps = [micro_batches(torch.arange(4), 8, lengths, 64), micro_batches(torch.arange(4, 8), 8, lengths, 64)]
    assert [len(s) for s in steps] == [2, 2]
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "all_reduce", lambda x, op="sum": torch.maximum(x, torch.tensor([4.0, 2.0])))
    even = even_counts(steps)
    assert [len(s) for s in even] == [4, 2] and even[1] == steps[1]
    assert sorted(torch.cat(even[0]).tolist()) == [0, 1, 2, 3]
    assert all(len(mb) * int(lengths[mb].max()) <= 64 for s in even for mb in s)


@pytest.mark.slow
def test_fsdp2_under_torchrun_with_token_budgets_that_cut_ranks_differently(tmp_path):
    """train.micro_batch_tokens=60 cuts the two ranks' rows into different numbers of micro-batches; FSDP2
    gathers at every forward, so without `even_counts` the ranks waited on each other forever (a hang)."""
    from rlreason.policy import REPO_ROOT

    args = ["configs/default.yaml", f"run.root={tmp_path}", "run.name=budget", "rollout.prompts_per_step=8",
            "rollout.group_size=4", "rollout.max_new_tokens=24", "train.threads=1", "data.eval_size=0",
            "log.progress=false", "train.strategy=fsdp2", "train.steps=3", "train.micro_batch_tokens=60"]
    done = torchrun_train(args, REPO_ROOT, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "budget" / "final").is_dir()
