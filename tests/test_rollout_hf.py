"""rlreason.rollout.hf: HFEngine output shape, finish rules, and that its log-probs are the trainer's log-probs.

The key property (test_engine_logprobs_match_teacher_forcing): the log-probs the
engine reports for the tokens it sampled equal a teacher-forced forward pass of
the same model over right-padded prompt+completion (what the trainer computes as
the policy's log-probs), so the PPO ratio starts at exactly 1.
"""
from __future__ import annotations

import math
import shutil
from types import SimpleNamespace

import pytest
import torch

from rlreason.errors import DataError
from rlreason.policy import load_model, stop_token_ids, token_logprobs
from rlreason.rollout import ENGINES
from rlreason.rollout.hf import HFEngine
from rlreason.tasks.templates import prompt_ids
from rlreason.types import Rollout, Sample

SAMPLES = [
    Sample(id="a", task="arithmetic", messages=[{"role": "user", "content": "1+2"}], answer="3"),
    Sample(id="b", task="arithmetic", prompt="12*34-5=", answer="403"),
    Sample(id="c", task="arithmetic", messages=[{"role": "user", "content": "73-8*9+15"}], answer="16"),
]


def eos_biased(model, tok, bias: float, ids=None):
    """Give the tied lm_head an output bias on the ids `ids` (default: the tokenizer's EOS) only (a test-side
    weight change; Llama has no bias), so the untrained tiny model stops with probability ~ e^b / (e^b + 103)
    per step for one id."""
    b = torch.zeros(model.config.vocab_size, dtype=model.lm_head.weight.dtype)
    b[[tok.eos_token_id] if ids is None else list(ids)] = bias
    model.lm_head.bias = torch.nn.Parameter(b)
    return model


def right_padded(rollout: Rollout, pad_id: int):
    """Prompt+completion rows, right-padded like batching.make_train_batch: (ids, attn, loss_mask, engine_logp)."""
    G = rollout.group_size
    seqs = [rollout.prompt_ids[i // G] + c.token_ids for i, c in enumerate(rollout.completions)]
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    loss_mask = torch.zeros(len(seqs), T)
    engine_logp = torch.zeros(len(seqs), T)
    for i, (s, c) in enumerate(zip(seqs, rollout.completions)):
        p = len(s) - len(c.token_ids)
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
        loss_mask[i, p : len(s)] = 1
        engine_logp[i, p : len(s)] = torch.tensor(c.logprobs)
    return ids, attn, loss_mask, engine_logp


def check_completion_rules(rollout: Rollout, tok, max_new_tokens: int, stop_ids=None):
    """Per-completion invariants: lengths agree, finish_reason follows EOS, text is the decode without EOS.
    EOS is any of `stop_ids` (default: the tokenizer's eos only)."""
    stops = set(stop_ids or [tok.eos_token_id])
    for c in rollout.completions:
        assert 1 <= len(c.token_ids) <= max_new_tokens
        assert len(c.logprobs) == len(c.token_ids)
        assert all(math.isfinite(x) and x <= 0 for x in c.logprobs)
        assert not stops & set(c.token_ids[:-1])  # nothing after an EOS
        if c.token_ids[-1] in stops:
            assert c.finish_reason == "stop" and not c.truncated
            assert c.text == tok.decode(c.token_ids[:-1], skip_special_tokens=True)
        else:
            assert c.finish_reason == "length" and c.truncated
            assert len(c.token_ids) == max_new_tokens
            assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)


def test_engine_registered():
    assert ENGINES.get("hf") is HFEngine


# ----------------------------------------------------------------------------- generate: shape and rules


def test_generate_shape_and_rules(tiny):
    model, tok = tiny
    eng = HFEngine(model, tok)
    torch.manual_seed(0)
    r = eng.generate(SAMPLES, n=3, temperature=1.0, max_new_tokens=12)
    assert isinstance(r, Rollout)
    assert len(r) == len(r.completions) == 9 and r.group_size == 3
    assert r.samples == SAMPLES and r.sample_of(4) is SAMPLES[1]
    assert r.prompt_ids == [prompt_ids(s, tok) for s in SAMPLES]  # tasks.templates renders the prompts
    check_completion_rules(r, tok, 12)


def test_finish_reasons_with_eos_likely(tiny):
    """With an EOS bias both endings occur; the rules hold for each, including EOS as the very last token."""
    model, tok = tiny
    eng = HFEngine(eos_biased(model, tok, 2.5), tok)
    torch.manual_seed(1)
    r = eng.generate(SAMPLES, n=4, temperature=1.0, max_new_tokens=10)
    check_completion_rules(r, tok, 10)
    reasons = {c.finish_reason for c in r.completions}
    assert reasons == {"stop", "length"}, [(c.finish_reason, len(c.token_ids)) for c in r.completions]
    stop_lengths = {len(c.token_ids) for c in r.completions if c.finish_reason == "stop"}
    assert len(stop_lengths) > 1  # rows that stop at different steps in one batch


def test_finish_reason_stop_immediately(tiny):
    """A huge EOS bias: every completion is exactly [EOS], 'stop', with empty text."""
    model, tok = tiny
    eng = HFEngine(eos_biased(model, tok, 50.0), tok)
    r = eng.generate(SAMPLES, n=2, temperature=1.0, max_new_tokens=12)
    for c in r.completions:
        assert c.token_ids == [tok.eos_token_id] and c.finish_reason == "stop" and c.text == ""
        assert c.logprobs[0] == pytest.approx(0.0, abs=1e-6)
    g = eng.generate(SAMPLES, n=1, greedy=True, max_new_tokens=12)
    assert all(c.token_ids == [tok.eos_token_id] for c in g.completions)


def test_finish_reason_length_without_eos(tiny):
    """A huge negative EOS bias: EOS never sampled, every completion runs to max_new_tokens, 'length'."""
    model, tok = tiny
    eng = HFEngine(eos_biased(model, tok, -50.0), tok)
    torch.manual_seed(0)
    r = eng.generate(SAMPLES, n=2, temperature=1.0, max_new_tokens=7)
    check_completion_rules(r, tok, 7)
    assert all(c.finish_reason == "length" and len(c.token_ids) == 7 for c in r.completions)


# ----------------------------------------------------------------------------- the key test


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("eos_bias", [0.0, 2.5], ids=["untrained", "eos-likely"])
def test_engine_logprobs_match_teacher_forcing(tiny, temperature, eos_bias):
    """Engine log-probs == token_logprobs(prompt+completion, same temperature) on every completion token.

    Covers left-padded prompts of different lengths in one generate batch, rows that stop early (their
    EOS log-prob included) while others go on, and right padding on the trainer side.
    """
    model, tok = tiny
    if eos_bias:
        eos_biased(model, tok, eos_bias)
    eng = HFEngine(model, tok)
    torch.manual_seed(7)
    r = eng.generate(SAMPLES, n=3, temperature=temperature, max_new_tokens=12)
    ids, attn, loss_mask, engine_logp = right_padded(r, tok.pad_token_id)
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids, attn, temperature)
    diff = ((logp - engine_logp) * loss_mask).abs()
    assert float(diff.max()) < 1e-4
    assert int(loss_mask.sum()) == sum(len(c.token_ids) for c in r.completions)
    if temperature != 1.0:
        # teeth: the temperature matters, so matching at the wrong temperature would fail
        with torch.no_grad():
            logp1, _ = token_logprobs(model, ids, attn, 1.0)
        assert float(((logp1 - engine_logp) * loss_mask).abs().max()) > 1e-2


def test_logprobs_match_make_train_batch(tiny):
    """The trainer's own batch builder places the engine log-probs where token_logprobs puts its values."""
    from rlreason.batching import make_train_batch

    model, tok = tiny
    eng = HFEngine(eos_biased(model, tok, 2.0), tok)
    torch.manual_seed(3)
    r = eng.generate(SAMPLES, n=2, temperature=0.8, max_new_tokens=10)
    batch = make_train_batch(r, torch.zeros(len(r)), tok.pad_token_id)
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, 0.8)
    assert float(((logp - batch.old_logp) * batch.loss_mask).abs().max()) < 1e-4


def test_engine_batches_split_across_prompts(tiny):
    """batch_size smaller than N (batches cut through groups): same invariants, logprobs still match."""
    model, tok = tiny
    eng = HFEngine(eos_biased(model, tok, 2.0), tok, SimpleNamespace(batch_size=4))
    torch.manual_seed(2)
    r = eng.generate(SAMPLES, n=3, temperature=1.0, max_new_tokens=9)
    assert len(r) == 9
    check_completion_rules(r, tok, 9)
    ids, attn, loss_mask, engine_logp = right_padded(r, tok.pad_token_id)
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids, attn, 1.0)
    assert float(((logp - engine_logp) * loss_mask).abs().max()) < 1e-4


# ----------------------------------------------------------------------------- greedy and seeding


def test_greedy_is_argmax_of_forward_and_deterministic(tiny):
    model, tok = tiny
    eng = HFEngine(model, tok)
    torch.manual_seed(0)
    g1 = eng.generate(SAMPLES, n=2, greedy=True, max_new_tokens=10)
    torch.manual_seed(123)
    g2 = eng.generate(SAMPLES, n=2, greedy=True, max_new_tokens=10)
    assert [c.token_ids for c in g1.completions] == [c.token_ids for c in g2.completions]
    # both members of a group are the same greedy continuation
    for i in range(0, 6, 2):
        assert g1.completions[i].token_ids == g1.completions[i + 1].token_ids
    check_completion_rules(g1, tok, 10)
    # each generated token is the argmax of the teacher-forced logits at the previous position
    with torch.no_grad():
        for i, c in enumerate(g1.completions):
            prompt = g1.prompt_ids[i // 2]
            seq = torch.tensor([prompt + c.token_ids])
            logits = model(input_ids=seq).logits[0]  # [T, V]
            for k, token in enumerate(c.token_ids):
                assert int(logits[len(prompt) + k - 1].argmax()) == token
    # greedy log-probs are reported at temperature 1
    ids, attn, loss_mask, engine_logp = right_padded(g1, tok.pad_token_id)
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids, attn, 1.0)
    assert float(((logp - engine_logp) * loss_mask).abs().max()) < 1e-4


def test_greedy_in_batch_equals_greedy_alone(tiny):
    """Left padding in a mixed batch does not change a prompt's greedy continuation, and completion i
    answers prompt i // n."""
    model, tok = tiny
    eng = HFEngine(model, tok)
    batch = eng.generate(SAMPLES, n=2, greedy=True, max_new_tokens=8)
    for j, s in enumerate(SAMPLES):
        alone = eng.generate([s], n=1, greedy=True, max_new_tokens=8).completions[0].token_ids
        assert batch.completions[2 * j].token_ids == alone
        assert batch.completions[2 * j + 1].token_ids == alone


def test_seeded_sampling_reproducible(tiny):
    model, tok = tiny
    eng = HFEngine(model, tok)
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        r = eng.generate(SAMPLES, n=2, temperature=1.0, max_new_tokens=8)
        runs.append([(c.token_ids, c.logprobs) for c in r.completions])
    assert runs[0] == runs[1]
    assert [t for t, _ in runs[0]] != [t for t, _ in runs[2]]


def test_sampling_uses_full_distribution_and_top_p(tiny):
    """No hidden top-k: 300 one-token samples from a near-uniform 104-way distribution hit > 60 distinct
    tokens (a default top_k=50 would cap it at 50); a tiny top_p keeps only the argmax (= greedy)."""
    model, tok = tiny
    eng = HFEngine(model, tok)
    torch.manual_seed(0)
    r = eng.generate(SAMPLES[:1], n=300, temperature=1.0, max_new_tokens=1)
    assert len({c.token_ids[0] for c in r.completions}) > 60
    greedy = eng.generate(SAMPLES[:1], n=1, greedy=True, max_new_tokens=6).completions[0].token_ids
    narrow = eng.generate(SAMPLES[:1], n=3, temperature=1.0, top_p=1e-6, max_new_tokens=6)
    assert all(c.token_ids == greedy for c in narrow.completions)


# ----------------------------------------------------------------------------- engine protocol


def test_training_mode_restored_and_sync_weights(tiny, tiny_model_dir):
    """generate runs in eval mode and restores the caller's mode; sync_weights switches the sampled model."""
    from rlreason.policy import load_model

    model, tok = tiny
    model.train()
    eng = HFEngine(model, tok)
    eng.generate(SAMPLES[:1], n=1, greedy=True, max_new_tokens=2)
    assert model.training
    other, _ = load_model(tiny_model_dir, "float32", "cpu")
    eos_biased(other, tok, 50.0)
    eng.sync_weights(other)
    r = eng.generate(SAMPLES[:1], n=1, greedy=True, max_new_tokens=4)
    assert r.completions[0].token_ids == [tok.eos_token_id]
    eng.close()


def test_finished_rows_leave_the_batch(tiny):
    """Per-sequence stopping: each decode forward sees only the rows that have not sampled EOS yet."""
    model, tok = tiny
    eng = HFEngine(eos_biased(model, tok, 2.5), tok)
    rows = []
    hook = model.register_forward_pre_hook(lambda m, args, kw: rows.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        torch.manual_seed(0)
        r = eng.generate(SAMPLES, n=4, temperature=1.0, max_new_tokens=12)
    finally:
        hook.remove()
    lengths = [len(c.token_ids) for c in r.completions]
    assert rows[0] == (12, max(len(p) for p in r.prompt_ids))  # prefill: every row, the whole prompt
    decode = [s[0] for s in rows[1:]]
    assert all(s[1] == 1 for s in rows[1:])
    # before step t+1 the batch holds exactly the completions longer than t+1 tokens
    assert decode == [sum(L > t for L in lengths) for t in range(1, len(decode) + 1)]
    assert decode[-1] < 12 and len(set(lengths)) > 1


def test_generate_fallback_matches_our_loop(tiny):
    """transformers.generate (used for models without a DynamicCache) and our loop agree: greedy tokens and
    log-probs, and the sampled rules."""
    model, tok = tiny
    eng = HFEngine(eos_biased(model, tok, 2.0), tok)
    ours = eng.generate(SAMPLES, n=1, greedy=True, max_new_tokens=10)
    type(model)._supports_default_dynamic_cache = classmethod(lambda cls: False)  # -> transformers.generate
    try:
        theirs = eng.generate(SAMPLES, n=1, greedy=True, max_new_tokens=10)
    finally:
        del type(model)._supports_default_dynamic_cache
    for a, b in zip(ours.completions, theirs.completions):
        assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


@pytest.mark.parametrize("fallback", [False, True])
def test_min_tokens_forces_full_length(two_eos, fallback):
    """engine.min_tokens masks every EOS id until that many tokens (benchmarks force full-length generations);
    the reported log-probs stay those of the unmasked distribution (the trainer's). Both ids are likely here, so
    masking only the tokenizer's eos would let the second one end completions early."""
    model, tok, stops = two_eos
    eng = HFEngine(eos_biased(model, tok, 4.0, stops), tok)
    eng.min_tokens = 8
    if fallback:
        eng._decode = eng._decode_generate  # the transformers.generate path
    torch.manual_seed(0)
    r = eng.generate(SAMPLES[:2], n=3, temperature=1.0, max_new_tokens=8)
    assert all(len(c.token_ids) == 8 for c in r.completions)
    ids, attn, mask, eng_lp = right_padded(r, tok.pad_token_id)
    lp, _ = token_logprobs(model, ids, attn)
    torch.testing.assert_close(lp * mask, eng_lp, atol=1e-4, rtol=0)


def test_prompt_over_the_context_is_one_line_before_any_forward(tiny, monkeypatch):
    """A prompt longer than max_position_embeddings (128 for the test model) stops before the prefill, which for a
    megabyte prompt would try to allocate gigabytes; a prompt at the context still runs."""
    model, tok = tiny
    engine = HFEngine(model, tok)
    specials = len(prompt_ids(Sample(id="", task="t", prompt="", answer=""), tok))  # e.g. BOS
    at = Sample(id="fits", task="t", prompt="1" * (128 - specials), answer="")
    assert len(prompt_ids(at, tok)) == 128
    assert len(engine.generate([at], n=1, max_new_tokens=1).completions) == 1
    over = Sample(id="jsonl/row/7", task="t", prompt="1" * 500_000, answer="")
    n = len(prompt_ids(over, tok))
    monkeypatch.setattr(model, "forward", lambda *a, **k: pytest.fail("the model ran on an over-long prompt"))
    with pytest.raises(DataError) as info:
        engine.generate(SAMPLES + [over], n=2)
    assert str(info.value) == f"sample 'jsonl/row/7': prompt is {n} tokens, over the model's context of 128"


# ----------------------------------------------------------------------------- every eos id of generation_config


@pytest.fixture
def two_eos(tiny_model_dir, tmp_path):
    """(model, tokenizer, stop ids) of the tiny model with a generation_config.json listing two eos ids, as an
    instruct model's does: the tokenizer's `<|eos|>` and `<|user|>` (the next turn's marker), which the
    tokenizer does not name."""
    from transformers import GenerationConfig

    folder = tmp_path / "two-eos"
    shutil.copytree(tiny_model_dir, folder)
    model, tok = load_model(str(folder), "float32", "cpu")
    ids = [tok.eos_token_id, tok.convert_tokens_to_ids("<|user|>")]
    GenerationConfig(eos_token_id=ids, pad_token_id=tok.pad_token_id).save_pretrained(folder)
    model, tok = load_model(str(folder), "float32", "cpu")
    return model, tok, ids


def test_stop_token_ids_from_generation_config(two_eos, tiny):
    model, tok, ids = two_eos
    assert tok.eos_token_id == ids[0] and model.generation_config.eos_token_id == ids  # read from the file
    assert stop_token_ids(model, tok) == sorted(ids) and HFEngine(model, tok).stop_ids == sorted(ids)
    assert stop_token_ids(*tiny) == [tiny[1].eos_token_id]  # an int in generation_config, the tokenizer's own
    ns = SimpleNamespace
    assert stop_token_ids(ns(generation_config=ns(eos_token_id=None), config=ns(eos_token_id=7)),
                          ns(eos_token_id=3)) == [3, 7]  # the model config's eos counts too
    assert stop_token_ids(ns(generation_config=ns(eos_token_id=(9, 4)), config=ns()), ns(eos_token_id=None)) == [4, 9]
    assert stop_token_ids(ns(), ns(eos_token_id=None)) == []  # no eos anywhere: completions run to the length


@pytest.mark.parametrize("fallback", [False, True])
def test_stops_on_every_eos_id(two_eos, fallback):
    """With both eos ids likely, completions end on each of them, never contain one before the end, and keep
    the HF rules (text without the id, 'stop'); the engine's log-probs still equal teacher forcing."""
    model, tok, ids = two_eos
    eng = HFEngine(eos_biased(model, tok, 2.0, ids), tok)
    if fallback:
        type(model)._supports_default_dynamic_cache = classmethod(lambda cls: False)  # -> transformers.generate
    try:
        torch.manual_seed(4)
        r = eng.generate(SAMPLES, n=8, temperature=1.0, max_new_tokens=10)
    finally:
        if fallback:
            del type(model)._supports_default_dynamic_cache
    check_completion_rules(r, tok, 10, ids)
    assert {c.token_ids[-1] for c in r.completions if c.finish_reason == "stop"} == set(ids)
    assert "length" in {c.finish_reason for c in r.completions}
    ids_, attn, loss_mask, engine_logp = right_padded(r, tok.pad_token_id)
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids_, attn, 1.0)
    assert float(((logp - engine_logp) * loss_mask).abs().max()) < 1e-4


def test_second_eos_id_alone_ends_every_completion(two_eos):
    """A huge bias on the id only generation_config names: every completion is exactly [that id], 'stop', ''."""
    model, tok, ids = two_eos
    eng = HFEngine(eos_biased(model, tok, 50.0, ids[1:]), tok)
    for r in (eng.generate(SAMPLES, n=2, temperature=1.0, max_new_tokens=12),
              eng.generate(SAMPLES, n=1, greedy=True, max_new_tokens=12)):
        assert all(c.token_ids == [ids[1]] and c.finish_reason == "stop" and c.text == "" for c in r.completions)
