"""rlreason.policy: model path resolution, loading, and teacher-forced per-token log-probs."""
from __future__ import annotations

import math
import re
import shutil
from types import SimpleNamespace

import pytest
import torch

from rlreason.policy import REPO_ROOT, ModelLoadError, load_model, resolve_model_path, token_logprobs

# ----------------------------------------------------------------------------- resolve_model_path


def test_resolve_dir_relative_to_cwd(tmp_path, monkeypatch):
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("my-model") == str(tmp_path / "my-model")
    (tmp_path / "runs" / "ckpt").mkdir(parents=True)
    assert resolve_model_path("runs/ckpt") == str(tmp_path / "runs" / "ckpt")  # one '/' but a local folder
    assert resolve_model_path("./my-model") == str(tmp_path / "./my-model")


def test_resolve_dir_relative_to_repo_root(tmp_path, monkeypatch):
    """A folder that exists only under the repo root is found from any working directory."""
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / "rlreason").exists()
    assert resolve_model_path("rlreason/algos") == str(REPO_ROOT / "rlreason" / "algos")
    assert resolve_model_path("tests") == str(REPO_ROOT / "tests")


def test_resolve_cwd_wins_over_repo_root(tmp_path, monkeypatch):
    (tmp_path / "tests").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("tests") == str(tmp_path / "tests")


def test_resolve_existing_absolute_path(tmp_path):
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)


def test_resolve_home_relative_dir(tmp_path, monkeypatch):
    (tmp_path / "home" / "my-model").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("~/my-model") == str(tmp_path / "home" / "my-model")


@pytest.mark.parametrize("bad", [
    "/definitely/not/a/model/dir",  # absolute, missing
    "/missing",  # absolute with one '/': still not a Hub id
    "no-such-model",  # bare name: Hub ids look like org/name
    "./no-such-model",
    "~/no-such-model-xyz",
    "a/b/c",  # two '/': not a Hub id, not a folder
])
def test_resolve_missing_raises(bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match="no such folder"):
        resolve_model_path(bad)


def test_resolve_hub_id_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("org/name") == "org/name"
    assert resolve_model_path("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


# ----------------------------------------------------------------------------- load_model


def test_load_model(tiny):
    """float32 on CPU; the tokenizer pads on the left (for generation) and has a pad id."""
    model, tok = tiny
    p = next(model.parameters())
    assert p.dtype == torch.float32 and p.device.type == "cpu"
    assert tok.padding_side == "left"
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1


def test_load_model_bfloat16(tiny_model_dir):
    model, _ = load_model(tiny_model_dir, "bfloat16", "cpu")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_load_model_missing_path():
    with pytest.raises(ModelLoadError):
        load_model("/no/such/model/folder", "float32", "cpu")


def test_load_model_folder_without_weights(tiny_model_dir, tmp_path):
    """Tokenizer and config present but no weights file: a ModelLoadError naming the path."""
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        shutil.copy(f"{tiny_model_dir}/{name}", tmp_path / name)
    with pytest.raises(ModelLoadError, match=re.escape(f"cannot load model '{tmp_path}'")):
        load_model(str(tmp_path), "float32", "cpu")


@pytest.mark.parametrize("files", [(), ("tokenizer.json", "tokenizer_config.json")], ids=["empty", "tokenizer-only"])
def test_load_model_incomplete_folder(files, tiny_model_dir, tmp_path):
    for name in files:
        shutil.copy(f"{tiny_model_dir}/{name}", tmp_path / name)
    with pytest.raises(ModelLoadError):
        load_model(str(tmp_path), "float32", "cpu")


# ----------------------------------------------------------------------------- token_logprobs


class FixedLogits(torch.nn.Module):
    """A stand-in model returning fixed logits [1, T, V]; records the kwargs it was called with."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.calls = []

    def forward(self, **kw):
        self.calls.append(kw)
        return SimpleNamespace(logits=self.logits)


def test_token_logprobs_hand_example():
    """V=2, T=3. Logits at t=0: [0,0] -> p=[.5,.5]; at t=1: [ln3, 0] -> p=[.75,.25] (t=2's logits unused).

    ids = [1, 1, 0]: logp = [0 (position 0), log .5, log .75] = [0, -0.693147, -0.287682].
    entropy = [0, ln 2 = 0.693147, -(.75 ln .75 + .25 ln .25) = 0.215762 + 0.346574 = 0.562335].
    """
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]])
    model = FixedLogits(logits)
    ids = torch.tensor([[1, 1, 0]])
    mask = torch.ones(1, 3, dtype=torch.long)
    logp, ent = token_logprobs(model, ids, mask, temperature=1.0, with_entropy=True)
    torch.testing.assert_close(logp, torch.tensor([[0.0, -0.693147, -0.287682]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(ent, torch.tensor([[0.0, 0.693147, 0.562335]]), atol=1e-6, rtol=0)
    # temperature 2 halves the logits: t=1 -> [ln3/2, 0] -> p0 = sqrt3/(sqrt3+1) = 0.633975, log = -0.455747
    logp2, ent2 = token_logprobs(model, ids, mask, temperature=2.0)
    assert ent2 is None
    torch.testing.assert_close(logp2, torch.tensor([[0.0, -0.693147, -0.455747]]), atol=1e-6, rtol=0)


def test_token_logprobs_position_ids_from_mask():
    """Right padding: position ids count real tokens (0,1,2,...) and stay clamped on the pad tail."""
    model = FixedLogits(torch.zeros(2, 5, 3))
    ids = torch.tensor([[1, 2, 0, 0, 0], [1, 2, 1, 2, 1]])
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    token_logprobs(model, ids, mask)
    call = model.calls[0]
    assert call["position_ids"].tolist() == [[0, 1, 1, 1, 1], [0, 1, 2, 3, 4]]
    assert call["attention_mask"] is mask and call["use_cache"] is False


def test_token_logprobs_shape_and_position_zero(tiny):
    model, tok = tiny
    ids = torch.tensor([tok("<|user|>12+30<|assistant|><think>12+30=42</think>\\boxed{42}").input_ids] * 2)
    mask = torch.ones_like(ids)
    logp, ent = token_logprobs(model, ids, mask, with_entropy=True)
    assert logp.shape == ids.shape and ent.shape == ids.shape
    assert logp.dtype == torch.float32
    assert torch.equal(logp[:, 0], torch.zeros(2)) and torch.equal(ent[:, 0], torch.zeros(2))
    assert (logp[:, 1:] < 0).all()
    assert logp.requires_grad and not ent.requires_grad  # entropy is detached, logp is differentiable
    assert (ent >= 0).all() and (ent <= math.log(len(tok)) + 1e-5).all()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_matches_manual_log_softmax(tiny, temperature):
    """logp[t] = log_softmax(logits[t-1] / temperature)[ids[t]], from a plain forward pass (no mask/pos ids)."""
    model, tok = tiny
    ids = torch.tensor([tok("<|user|>7*8-5<|assistant|><think>").input_ids])
    logp, _ = token_logprobs(model, ids, torch.ones_like(ids), temperature)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]  # [T, V]
    for t in range(1, ids.shape[1]):
        manual = torch.log_softmax(logits[t - 1] / temperature, -1)[ids[0, t]]
        assert abs(float(logp[0, t].detach()) - float(manual)) < 1e-5, t


def test_token_logprobs_right_padding_does_not_change_real_tokens(tiny):
    """A sequence alone and right-padded (with pad or junk ids) in a batch with a longer one: same logp."""
    model, tok = tiny
    a = tok("<|user|>3+4<|assistant|>7").input_ids
    b = tok("<|user|>15-9*2<|assistant|><think>9*2=18</think>").input_ids
    assert len(b) > len(a) + 5
    alone, _ = token_logprobs(model, torch.tensor([a]), torch.ones(1, len(a), dtype=torch.long))
    b_alone, _ = token_logprobs(model, torch.tensor([b]), torch.ones(1, len(b), dtype=torch.long))
    for filler in (tok.pad_token_id, 42):
        ids = torch.full((2, len(b)), filler)
        ids[0, : len(a)] = torch.tensor(a)
        ids[1] = torch.tensor(b)
        mask = torch.zeros_like(ids)
        mask[0, : len(a)] = 1
        mask[1] = 1
        batched, _ = token_logprobs(model, ids, mask)
        torch.testing.assert_close(batched[0, : len(a)], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batched[1], b_alone[0], atol=1e-5, rtol=0)
    # the check has teeth: the same tokens at shifted positions give different log-probs
    shifted, _ = token_logprobs(model, torch.tensor([b[:3] + a]), torch.ones(1, len(a) + 3, dtype=torch.long))
    assert (shifted[0, 3 + 1:] - alone[0, 1:]).abs().max() > 1e-4
