"""Cold-start SFT builds a model from scratch, trains on completions only, and saves a loadable checkpoint."""
import json

import torch

from rlreason.sft_config import SFTConfig
from rlreason.policy import load_model
from rlreason.batching import sft_batch as collate
from rlreason.sft import make_examples, run_sft
from rlreason.tasks import TASKS
from rlreason.tinymodel import build_tokenizer


def test_labels_cover_completion_only():
    tok = build_tokenizer()
    task = TASKS.get("arithmetic")({}, seed=0)
    pairs = make_examples(task, tok, 3)
    ids, mask, labels = collate(pairs, tok.pad_token_id)
    for i, (p, c, _) in enumerate(pairs):
        assert (labels[i, : len(p)] == -100).all()
        assert labels[i, len(p) : len(p) + len(c)].tolist() == c
        assert c[-1] == tok.eos_token_id
        assert int(mask[i].sum()) == len(p) + len(c)


def test_sft_from_scratch_lowers_loss_and_saves(tmp_path):
    out = tmp_path / "m"
    cfg = SFTConfig(out=str(out), hidden_size=32, layers=1, heads=2, intermediate_size=64, max_positions=96,
                    examples=200, steps=40, batch_size=16, lr=3e-3, warmup_steps=5, eval_size=4)
    info = run_sft(cfg, progress=False)
    saved = json.loads((out / "sft_info.json").read_text())
    assert saved["eval/size"] == 4 and saved["final_loss"] == info["final_loss"]
    assert info["final_loss"] < 3.5  # from ~ln(104)=4.64 at random init
    model, tok = load_model(str(out), device="cpu")
    assert sum(p.numel() for p in model.parameters()) == saved["params"]
    assert tok.decode(tok("<think>1+2=3</think>").input_ids) == "<think>1+2=3</think>"
    assert torch.isfinite(next(model.parameters())).all()
