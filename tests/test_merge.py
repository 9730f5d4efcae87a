"""`rlreason merge`: W*A + (1-W)*B exactly, tensor by tensor; mismatched models and non-empty outputs refused."""
import json

import pytest
import torch
from safetensors.torch import load_file

from rlreason.checkpoint import save_pretrained
from rlreason.cli import main
from rlreason.errors import ConfigError
from rlreason.merge import average, merge
from rlreason.policy import load_model
from rlreason.tinymodel import build_model, build_tokenizer


def tiny(path, seed, hidden=32, layers=1):
    tok = build_tokenizer(64)
    model = build_model(tok, hidden, layers, 2, 64, 64, seed)
    save_pretrained(model, tok, path)
    (path / "sft_info.json").write_text("{}\n")
    return load_file(str(path / "model.safetensors"))


def test_average_by_hand():
    a, b = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([3])}, {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor([3])}
    out = average(a, b, 0.25)
    assert out["w"].tolist() == [2.5, 5.0] and out["n"].tolist() == [3]
    with pytest.raises(ConfigError, match="tensor 'n'"):
        average(a, {"w": b["w"], "n": torch.tensor([4])}, 0.5)


def test_merge_averages_exactly(tmp_path, capsys):
    ta, tb = tiny(tmp_path / "a", 0), tiny(tmp_path / "b", 1)
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--weight", "0.3", "-o", str(tmp_path / "m")]) == 0
    assert "wrote" in capsys.readouterr().out
    tm = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert set(tm) == set(ta) and len(tm) > 3
    for name in ta:
        assert not torch.equal(ta[name], tb[name]) or name.endswith("norm.weight")
        assert torch.equal(tm[name], 0.3 * ta[name] + 0.7 * tb[name]), name
    for w, want in ((1.0, ta), (0.0, tb)):  # the ends of the segment are the inputs themselves
        merge(str(tmp_path / "a"), str(tmp_path / "b"), w, str(tmp_path / f"m{w}"))
        got = load_file(str(tmp_path / f"m{w}" / "model.safetensors"))
        assert all(torch.equal(got[n], want[n]) for n in want)
    info = json.loads((tmp_path / "m" / "merge_info.json").read_text())
    assert info["weight_a"] == 0.3 and not (tmp_path / "m" / "sft_info.json").exists()
    model, tok = load_model(str(tmp_path / "m"), device="cpu")  # a loadable model with A's tokenizer
    assert tok.decode(tok("<think>1+2=3</think>").input_ids) == "<think>1+2=3</think>"


def test_merge_refuses_mismatched_models(tmp_path, capsys):
    tiny(tmp_path / "a", 0)
    tiny(tmp_path / "wide", 0, hidden=64)
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "wide"), "--weight", "0.5", "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "config.json differs in 'head_dim': 16 in" in err  # the first key, sorted
    # same config, but a tensor renamed: the error names it
    tiny(tmp_path / "b", 1)
    tensors = load_file(str(tmp_path / "b" / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors["renamed.weight"] = tensors.pop(name)
    from safetensors.torch import save_file
    save_file(tensors, str(tmp_path / "b" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=f"tensor '{name}' is only in model A"):
        merge(str(tmp_path / "a"), str(tmp_path / "b"), 0.5, str(tmp_path / "m"))
    tensors[name] = tensors.pop("renamed.weight")[:1]  # right name, wrong shape
    save_file(tensors, str(tmp_path / "b" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConfigError, match=f"tensor '{name}' has shape"):
        merge(str(tmp_path / "a"), str(tmp_path / "b"), 0.5, str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\]"):
        merge(str(tmp_path / "a"), str(tmp_path / "a"), 1.5, str(tmp_path / "m"))
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="LoRA adapter; merge it into its base model first"):
        merge(str(tmp_path / "a"), str(tmp_path / "lora"), 0.5, str(tmp_path / "m"))


def test_merge_refuses_non_empty_out(tmp_path):
    tiny(tmp_path / "a", 0)
    tiny(tmp_path / "b", 1)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        merge(str(tmp_path / "a"), str(tmp_path / "b"), 0.5, str(out))
    assert (out / "notes.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="one of the input models"):
        merge(str(tmp_path / "a"), str(tmp_path / "b"), 0.5, str(tmp_path / "a"), force=True)
    merge(str(tmp_path / "a"), str(tmp_path / "b"), 0.5, str(out), force=True)
    assert (out / "model.safetensors").is_file() and not (out / "notes.txt").exists()
    (tmp_path / "empty").mkdir()  # an empty folder is fine without --force
    merge(str(tmp_path / "a"), str(tmp_path / "b"), 0.5, str(tmp_path / "empty"))
