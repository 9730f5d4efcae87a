"""rlreason/precision.py: bf16 compute over fp32 master weights (updates far below bf16's resolution are kept),
the fp32 LM head, final/ in bf16, float16 refused, and bit-exact resume of a bf16 run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlreason import load_config, precision, train
from rlreason.build import build
from rlreason.errors import ConfigError
from rlreason.policy import REPO_ROOT, load_model, token_logprobs
from test_checkpoint import ARGS, assert_same_run, kill_during_step_4, rows

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"
SMALL = [f"model.path={SHIPPED}", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=16",
         "data.eval_size=0", "log.progress=false", "model.dtype=bfloat16", "train.threads=2"]


def test_bf16_run_keeps_fp32_masters_that_take_lr_1e6_updates(tmp_path):
    """10 AdamW steps at lr 1e-6: the fp32 masters change almost everywhere; rounded to bf16 (what a bf16-only
    model would hold) almost nothing would have moved."""
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=bf16", *SMALL, "train.steps=10", "train.lr=1e-6",
                             "train.weight_decay=0.0"])
    parts = build(cfg)
    assert all(p.dtype == torch.float32 for p in parts.model.parameters())  # masters
    before = {k: v.clone() for k, v in parts.model.state_dict().items()}
    train(cfg, parts)
    after = parts.model.state_dict()
    changed = sum(int((after[k] != before[k]).sum()) for k in before)
    in_bf16 = sum(int((after[k].bfloat16() != before[k].bfloat16()).sum()) for k in before)
    total = sum(v.numel() for v in before.values())
    assert changed / total > 0.9, changed / total
    assert in_bf16 / total < 0.1, in_bf16 / total  # why a bf16-only model loses these updates
    final = Path(cfg.run.root) / "bf16" / "final"
    assert {v.dtype for v in load_file(final / "model.safetensors").values()} == {torch.bfloat16}
    assert json.loads((final / "config.json").read_text())["dtype"] == "bfloat16"
    ckpt_free = load_model(str(final), "float32", "cpu")[0]  # loads back
    assert next(ckpt_free.parameters()).dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_on_cuda_keeps_fp32_masters_and_moves_them(tmp_path):
    """The same run on CUDA (benchmarks/gpu_check.sh runs it): masters stay fp32 on the GPU and take the update."""
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=cuda", *SMALL, "model.device=cuda", "train.steps=3",
                             "train.lr=1e-6", "train.weight_decay=0.0"])
    parts = build(cfg)
    assert {(p.dtype, p.device.type) for p in parts.model.parameters()} == {(torch.float32, "cuda")}
    before = {k: v.clone() for k, v in parts.model.state_dict().items()}
    train(cfg, parts)
    after = parts.model.state_dict()
    changed = sum(int((after[k] != before[k]).sum()) for k in before) / sum(v.numel() for v in before.values())
    assert changed > 0.9, changed


def test_autocast_and_the_fp32_head(tiny):
    model, tok = tiny
    ids = torch.tensor([[2, 9, 80, 10, 3, 11]])
    mask = torch.ones_like(ids)
    with precision.compute("bfloat16", torch.device("cpu")):
        logits = model(input_ids=ids, attention_mask=mask).logits
        assert logits.dtype == torch.bfloat16  # the head's product in bf16
        precision.fp32_head(model)
        assert model(input_ids=ids, attention_mask=mask).logits.dtype == torch.float32
        bf16_head, _ = token_logprobs(model, ids, mask)
    full, _ = token_logprobs(model, ids, mask)  # no autocast: fp32 throughout
    assert (bf16_head - full).abs().max() < 0.05  # bf16 body, fp32 head: close to fp32, not equal
    assert set(model.state_dict()) == set(model.state_dict())  # names unchanged (forward replaced only)
    with precision.compute("float32", torch.device("cpu")):
        assert model(input_ids=ids, attention_mask=mask).logits.dtype == torch.float32


def test_float16_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="model.dtype: float16 needs loss scaling"):
        load_config(None, ["model.dtype=float16"])


@pytest.mark.slow
def test_a_bf16_run_resumes_bit_exactly_after_sigkill(tmp_path):
    args = [*ARGS, "model.dtype=bfloat16", "model.fp32_head=true"]
    full = train(load_config(None, [f"run.root={tmp_path}", "run.name=full", *args]))
    state = torch.load(Path(full["run_dir"]) / "checkpoints" / "step_00000006" / "state.pt", weights_only=False)
    ckpt_weights = load_file(Path(full["run_dir"]) / "checkpoints" / "step_00000006" / "model" / "model.safetensors")
    assert {v.dtype for v in ckpt_weights.values()} == {torch.float32}  # checkpoints hold the fp32 masters
    assert all(s["exp_avg"].dtype == torch.float32 for s in state["opt"]["state"].values())
    kill_during_step_4(tmp_path, "killed", args)
    resumed = train(load_config(None, [f"run.root={tmp_path}", "run.name=killed", "run.resume=auto", *args]))
    assert_same_run(resumed, (full, rows(Path(full["run_dir"]))))


@pytest.mark.slow
def test_bf16_under_torchrun_fsdp2(tmp_path):
    """2 gloo ranks, FSDP2, bf16 autocast over sharded fp32 masters: trains, checkpoints full fp32 state."""
    import os
    import subprocess
    import sys

    from test_distributed import _free_port

    args = ["configs/default.yaml", f"run.root={tmp_path}", "run.name=dp", "rollout.prompts_per_step=4",
            "rollout.group_size=2", "rollout.max_new_tokens=12", "train.threads=1", "data.eval_size=4",
            "run.save_every=2", "log.progress=false", "train.strategy=fsdp2", "train.lr=1e-3", "train.steps=2",
            "model.dtype=bfloat16"]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(_free_port()), "-m", "rlreason", "train", *args], cwd=REPO_ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = tmp_path / "dp" / "checkpoints" / "step_00000002"
    state = torch.load(ckpt / "state.pt", weights_only=False)
    assert all(s["exp_avg"].dtype == torch.float32 for s in state["opt"]["state"].values())
    assert {v.dtype for v in load_file(ckpt / "model" / "model.safetensors").values()} == {torch.float32}
    assert {v.dtype for v in load_file(tmp_path / "dp" / "final" / "model.safetensors").values()} == {torch.bfloat16}
