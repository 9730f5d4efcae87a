"""Shared fixtures: a tiny from-scratch Llama + character tokenizer saved to a temp folder.

`tiny_model_dir` is built once per session (a few hundred KB on disk);
`tiny` loads a fresh (model, tokenizer) from it for every test, so a test may
change the weights in place without leaking into other tests. `rehearsal_model_dir`
is the Qwen2-shaped rehearsal model of `rlreason.rehearsal` (byte-level BPE, ChatML,
two eos ids in generation_config.json), built once per session in about 2 s.
"""
from __future__ import annotations

import pytest
import torch

# The test models are tiny (~30k parameters): intra-op threading only adds
# synchronisation cost, and on a busy 2-core machine 2 threads made one forward
# pass ~100x slower than 1 thread. One thread keeps the suite fast and does not
# change any result.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """Path (str) of a folder holding a saved tiny tokenizer + LlamaForCausalLM (seed 0)."""
    from rlreason.tinymodel import build_model, build_tokenizer

    path = tmp_path_factory.mktemp("tiny-model")
    tok = build_tokenizer()
    model = build_model(tok, hidden_size=32, layers=2, heads=2, intermediate_size=64, max_positions=128, seed=0)
    tok.save_pretrained(path)
    model.save_pretrained(path)
    return str(path)


@pytest.fixture
def tiny(tiny_model_dir):
    """(model, tokenizer) loaded from `tiny_model_dir` on CPU in float32 (tokenizer pads on the left)."""
    from rlreason.policy import load_model

    return load_model(tiny_model_dir, "float32", "cpu")


@pytest.fixture(scope="session")
def rehearsal_model_dir(tmp_path_factory) -> str:
    """Path (str) of the rehearsal model (`python -m rlreason.rehearsal`, seed 0), built into a temp folder."""
    from rlreason.rehearsal import save_rehearsal

    return str(save_rehearsal(str(tmp_path_factory.mktemp("rehearsal-model")), seed=0))
