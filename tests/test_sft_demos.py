"""`rlreason sft` demonstration sources: the shortest-correct selection by hand, and shortest_of_k end to end."""
import json

import pytest

from rlreason.cli import main
from rlreason.config_load import load_config
from rlreason.errors import ConfigError
from rlreason.sft_config import SFTConfig
from rlreason.sft_demos import answer_tokens, shortest_correct

TINY = "models/tiny-reasoner"


def test_shortest_correct_by_hand():
    # k=3: prompt 0 has two correct 3-token answers (tie: the first sampled wins) and a shorter wrong one;
    # prompt 1's shortest correct answer hit the token limit, so the longer one that stopped is kept;
    # prompt 2 has no correct answer that stopped: dropped.
    lengths = [5, 3, 3, 2, 4, 9, 1, 6, 6]
    correct = [1, 1, 1, 0, 1, 1, 1, 0, 0]
    stopped = [1, 1, 1, 1, 0, 1, 0, 1, 1]
    assert shortest_correct(lengths, correct, stopped, 3) == [1, 5, None]
    assert shortest_correct([4, 4], [True, True], [True, True], 1) == [0, 1]
    with pytest.raises(ValueError, match="groups of k=2"):
        shortest_correct([1, 2, 3], [1, 1, 1], [1, 1, 1], 2)


def test_answer_tokens_eos():
    assert answer_tokens([7, 8, 1], [1], 1) == ([7, 8, 1], 2)  # ended with its own EOS: kept, not counted
    assert answer_tokens([7, 8], [1], 1) == ([7, 8, 1], 2)  # stopped another way: EOS appended
    assert answer_tokens([7, 2], [1, 2], 1) == ([7, 2], 1)  # any stop id counts as the end


def test_demos_validation():
    with pytest.raises(ConfigError, match="init: demos=shortest_of_k samples from the model"):
        load_config(None, ["demos=shortest_of_k"], schema=SFTConfig)
    with pytest.raises(ConfigError, match="out: must differ from init"):
        load_config(None, ["demos=shortest_of_k", f"init={TINY}", f"out={TINY}"], schema=SFTConfig)
    with pytest.raises(ConfigError, match="demos: unknown name 'longest'"):
        load_config(None, ["demos=longest"], schema=SFTConfig)
    with pytest.raises(ConfigError, match="sample_k: must be >= 1"):
        load_config(None, ["demos=shortest_of_k", f"init={TINY}", "out=x", "sample_k=0"], schema=SFTConfig)


def test_shortest_of_k_sft_end_to_end(tmp_path, capsys):
    out = tmp_path / "short"
    assert main(["sft", "demos=shortest_of_k", f"init={TINY}", f"out={out}", "sample_prompts=6", "sample_k=2",
                 "sample_max_new_tokens=64", "steps=2", "warmup_steps=1", "batch_size=2", "lr=1e-4", "eval_size=4",
                 "threads=1"]) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "sft_info.json").read_text())
    assert "[sft] shortest_of_k: sampled 6/6 prompts x 2" in printed  # progress while sampling
    assert f"{info['demos/with_correct']} of 6 prompts had a correct sample of 2" in printed
    assert 1 <= info["demos/with_correct"] <= 6 and info["demos/prompts"] == 6
    assert 0 < info["demos/kept_tokens"] <= 64 and 0 <= info["demos/correct_rate"] <= 1
    assert info["eval/size"] == 4 and info["sft_config"]["demos"] == "shortest_of_k"
    assert (out / "model.safetensors").is_file()


def test_shortest_of_k_with_no_correct_sample_stops(tmp_path, capsys):
    # one token per sample: every sample is cut off, so no prompt has a demonstration
    assert main(["sft", "demos=shortest_of_k", f"init={TINY}", f"out={tmp_path / 'x'}", "sample_prompts=2",
                 "sample_k=2", "sample_max_new_tokens=1", "steps=1", "eval_size=2", "threads=1"]) == 2
    assert "none of 2 prompts had a correct completion among 2 samples" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_sampling_in_chunks_draws_what_one_call_draws():
    """The progress chunks are whole engine batches, so the samples equal one generate call's bit for bit."""
    import torch

    from rlreason.policy import load_model
    from rlreason.rollout.hf import HFEngine
    from rlreason.sft_demos import sample_with_progress
    from rlreason.tasks import TASKS

    model, tok = load_model(str(TINY))
    samples = list(TASKS.get("arithmetic")({}, seed=0).eval_samples(7))
    engine = HFEngine(model, tok)
    engine.batch_size = 4  # k=2: 2 prompts a chunk, 4 chunks, the last one short
    torch.manual_seed(3)
    whole = engine.generate(samples, 2, 1.0, 1.0, 24)
    torch.manual_seed(3)
    chunked = sample_with_progress(engine, samples, 2, 1.0, 24, every_s=0.0)
    assert [c.token_ids for c in chunked.completions] == [c.token_ids for c in whole.completions]
    assert [c.logprobs for c in chunked.completions] == [c.logprobs for c in whole.completions]
    assert chunked.prompt_ids == whole.prompt_ids and len(chunked.samples) == 7
