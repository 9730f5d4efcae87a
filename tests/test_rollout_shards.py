"""rlreason.rollout.shards: partial rollouts and `rollout.max_staleness` under torchrun (WORLD_SIZE > 1).

The key properties: every rank trains exactly prompts_per_step / WORLD_SIZE groups a step however unevenly
its groups finish, the ranks draw the same prompts (their samplers stay identical) and the trainer gets every
rank's trained prompts in the order of its gathered scores; a torchrun run trains within the staleness bound
and resumes from a checkpoint exactly as it would have continued; another world size is refused."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from rlreason import distributed
from rlreason.errors import ConfigError
from rlreason.rollout import shards
from rlreason.rollout.overlap import OverlapRollouts
from rlreason.rollout.partial import PartialRollouts

from test_distributed import _free_port, torchrun_train
from test_rollout_partial import cfg, stream

W = 2


def test_one_process_decisions_and_states_are_the_single_process_ones():
    assert shards.any_rank(True) and not shards.any_rank(False) and shards.most(3) == 3
    info = {"rollout/new_tokens": 5.0, "rollout/partial_rounds": 2.0}
    assert shards.reduce_info(info, same=["rollout/partial_rounds"]) == info
    pool = PartialRollouts(budget=2, max_steps=3)
    pool.born = 4
    state = shards.RankStates(pool).state_dict()
    assert state["born"] == 4 and "world" not in state  # the single-process checkpoint format
    again = PartialRollouts(budget=2, max_steps=3)
    shards.RankStates(again).load_state_dict(state)
    assert again.born == 4 and again.backlog == []


def test_a_served_rank_can_run_a_round_with_nothing_in_flight(tiny):
    from rlreason.rollout.hf import HFEngine

    assert HFEngine(*tiny).extend([], [], 1.0, 1.0, keys=[], tag=0) == []


@pytest.mark.parametrize("source", [PartialRollouts(2, 3), OverlapRollouts(1, 4, 0)])
def test_a_checkpoint_of_another_world_size_is_refused_in_one_line(source):
    saved = {"world": 2, "ranks": [source.state_dict(), source.state_dict()]}
    with pytest.raises(ConfigError, match=rf"^{source.key}: the checkpoint holds the in-flight rollouts of "
                                          r"WORLD_SIZE=2 rank\(s\); resume it with 2 \(the carried samples cannot be "
                                          r"resharded\)$"):
        shards.RankStates(source).load_state_dict(saved)


def test_world_size_rules_of_the_carried_sources(monkeypatch):
    from rlreason.algos import ADVANTAGES
    from rlreason.config_load import load_config

    def check(*overrides, engine=None):
        c = load_config(None, ["rollout.prompts_per_step=4", "data.eval_size=4", *overrides])
        c.rollout.engine = engine or c.rollout.engine
        distributed.check_config(c, ADVANTAGES.get(c.algo.advantage))

    monkeypatch.setattr(distributed, "world", lambda: 2)
    check("rollout.partial_tokens=8")  # the hf engine: fine
    check("rollout.partial_tokens=8", "rollout.partial_groups=6")
    check("rollout.partial_tokens=8", engine="vllm")  # every rank runs the same rounds: vLLM's lockstep holds
    check("rollout.max_staleness=1")
    with pytest.raises(ConfigError, match="^rollout.partial_groups: 5 does not split over WORLD_SIZE=2 ranks$"):
        check("rollout.partial_tokens=8", "rollout.partial_groups=5")
    with pytest.raises(ConfigError, match=r"^rollout.max_staleness: needs rollout.engine=hf \(not 'vllm'\) with "
                                          r"WORLD_SIZE=2 > 1$"):
        check("rollout.max_staleness=1", engine="vllm")


def _partial_worker(rank: int, port: int, model_dir: str, out: str) -> None:
    """Five steps of partial rollouts on this rank; rank 1's samples end sooner than rank 0's (EOS bias)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(W), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    assert distributed.init("cpu")
    from rlreason.policy import load_model
    from rlreason.rollout.hf import HFEngine
    from rlreason.sampling import UniformSampler
    from test_rollout_hf import eos_biased

    model, tok = load_model(model_dir, "float32", "cpu")
    eos_biased(model, tok, 3.0 if rank else 1.0)
    torch.manual_seed(rank)
    engine, sampler, pool = HFEngine(model, tok), UniformSampler(stream()), PartialRollouts(2, 2, groups=6)
    steps = []
    for version in range(5):
        everyone, rollout = pool.next(sampler, engine, cfg(P=4, G=2, max_new=24), version)
        steps.append({"everyone": [s.id for s in everyone], "mine": [s.id for s in rollout.samples],
                      "completions": len(rollout.completions), "consumed": sampler.consumed,
                      "backlog": len(pool.backlog), "info": pool.metrics()})
    torch.save(steps, f"{out}/partial{rank}.pt")
    distributed.close()


@pytest.mark.slow
def test_ranks_that_finish_at_different_rates_train_equal_shares_of_the_same_prompts(tiny_model_dir, tmp_path):
    mp.spawn(_partial_worker, args=(_free_port(), tiny_model_dir, str(tmp_path)), nprocs=W, join=True)
    ranks = [torch.load(tmp_path / f"partial{r}.pt", weights_only=False) for r in range(W)]
    for a, b in zip(*ranks):
        assert len(a["mine"]) == len(b["mine"]) == 2 and a["completions"] == b["completions"] == 4
        assert a["everyone"] == b["everyone"] and a["consumed"] == b["consumed"]  # the samplers agree
        assert a["everyone"][0::W] == a["mine"] and a["everyone"][1::W] == b["mine"]  # the trainer's gather order
        assert a["info"] == b["info"]  # rollout/* over both ranks
        assert a["info"]["rollout/partial_rounds"] == int(a["info"]["rollout/partial_rounds"])  # one count for both
    trained = [i for step in ranks[0] for i in step["everyone"]]
    assert len(set(trained)) == len(trained)  # no prompt trained twice
    assert any(step["backlog"] for r in ranks for step in r)  # a rank drew more than it had room for


def _run(tmp_path, name: str, extra, ranks: int = W):
    args = ["configs/default.yaml", f"run.root={tmp_path}", f"run.name={name}", "rollout.prompts_per_step=4",
            "rollout.group_size=2", "rollout.max_new_tokens=24", "rollout.temperature=2.0", "train.threads=1",
            "data.eval_size=2", "log.progress=false", "train.lr=1e-3", "train.steps=4", "run.save_every=1",
            "run.keep_last=10", *extra]
    from rlreason.policy import REPO_ROOT

    done = torchrun_train(args, REPO_ROOT, ranks)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / name


def _records(run):
    return [{k: v for k, v in json.loads(x).items() if not k.startswith("perf/")}  # wall times differ
            for x in (run / "metrics.jsonl").read_text().splitlines()]


PARTIAL = ("rollout.partial_tokens=4", "rollout.partial_groups=8", "rollout.partial_max_steps=2", "train.strategy=ddp",
           "data.sampling=prioritized", "data.pool_size=12")  # scored with every rank's gathered prompts
AHEAD = ("rollout.max_staleness=1", "train.strategy=fsdp2")


@pytest.mark.slow
@pytest.mark.parametrize("extra, bound", [(PARTIAL, 2), (AHEAD, 1), (("train.strategy=ddp",), None)],
                         ids=["partial-ddp", "max_staleness-fsdp2", "synchronous-ddp"])
def test_torchrun_trains_within_the_bound_and_resumes_exactly(tmp_path, extra, bound):
    """2 ranks: 4 steps; then a copy of the run cut back to its step-2 checkpoint resumes with 2 ranks and ends
    with the same records and weights (every rank's in-flight state and random stream restored;
    temperature 2 makes a rank's random stream visible in its samples)."""
    full = _run(tmp_path / "a", "r", extra)
    steps = [r for r in _records(full) if "loss/total" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    state = torch.load(full / "checkpoints" / "step_00000002" / "state.pt", weights_only=False)
    assert len(state["rank_rng"]) == W
    if bound is not None:  # carried rollouts
        assert all(0 <= r["rollout/staleness_mean"] <= r["rollout/staleness_max"] <= bound for r in steps)
        assert max(r["rollout/staleness_max"] for r in steps) == bound
        assert state["rollouts"]["world"] == W and len(state["rollouts"]["ranks"]) == W
    if "data.sampling=prioritized" in extra:  # the sampler scored every rank's trained prompts: 4 a step
        assert float(state["sampler"]["attempts"].sum()) == 2 * 4
    cut = tmp_path / "b" / "r"
    shutil.copytree(full, cut)
    for name in ("checkpoints/step_00000003", "checkpoints/step_00000004", "final", "summary.json"):
        shutil.rmtree(cut / name) if (cut / name).is_dir() else (cut / name).unlink()
    _run(tmp_path / "b", "r", [*extra, "run.resume=auto", "run.allow_config_change=true"])  # run.root differs
    assert _records(cut) == _records(full)
    wa, wb = load_file(full / "final" / "model.safetensors"), load_file(cut / "final" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
def test_torchrun_partial_rollouts_on_vllm(tmp_path):
    """rollout.engine=vllm, 2 ranks (vLLM's data-parallel engines must generate in lockstep): every rank runs the
    same rounds, also a served rank with nothing in flight (an empty `extend`: it happens at step 2 of this run,
    seen by hand with a print), and the run finishes within the bound."""
    run = _run(tmp_path, "v", ["rollout.engine=vllm", "rollout.partial_tokens=4", "rollout.partial_max_steps=2",
                               "run.save_every=0"])
    steps = [r for r in _records(run) if "loss/total" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert all(0 <= r["rollout/staleness_max"] <= 2 and r["rollout/new_tokens"] > 0 for r in steps)
    assert any(r["rollout/staleness_max"] > 0 for r in steps)


def test_overlap_seeds_differ_by_rank_and_rank_0_keeps_the_single_process_stream(monkeypatch, tiny):
    """Each rank's rollout of a step has its own random stream; rank 0's is the one-process stream."""
    from rlreason.rollout.hf import HFEngine
    from rlreason.sampling import UniformSampler

    model, tok = tiny

    def tokens():
        source = OverlapRollouts(1, last_step=1, seed=3)
        _, rollout = source.next(UniformSampler(stream()), HFEngine(model, tok), cfg(P=2, G=2, max_new=12), 0)
        return [c.token_ids for c in rollout.completions]

    alone = tokens()
    monkeypatch.setattr(distributed, "shard_prompts", lambda samples: list(samples))  # the same prompts on both
    by_rank = {}
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=rank: r)
        by_rank[rank] = tokens()
    assert alone == by_rank[0] != by_rank[1]
