"""rlreason.tinymodel: the character tokenizer and tiny Llama, after a save/reload through the Auto classes."""
from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
from transformers.tokenization_utils_tokenizers import TokenizersBackend

from rlreason.policy import REPO_ROOT
from rlreason.tinymodel import CHARS, PIECES, SPECIAL, build_model, build_tokenizer

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


# ----------------------------------------------------------------------------- tokenizer


def test_reloaded_tokenizer_is_fast_backend(tok):
    """AutoTokenizer gives the tokenizers-backed fast class (not a slow or model-specific one)."""
    assert isinstance(tok, TokenizersBackend)
    assert tok.is_fast
    assert len(tok) == len(SPECIAL) + len(PIECES) + len(CHARS) == 104


def test_vocab_covers_printable_text():
    """Every printable character except \\t \\r \\x0b \\x0c is in the vocabulary, once."""
    expected = set(string.printable) - set("\t\r\x0b\x0c")
    assert set(CHARS) == expected and len(CHARS) == len(expected) == 96
    assert " " in CHARS and "\n" in CHARS


def test_each_character_is_one_token(tok):
    ids = [tok(c, add_special_tokens=False).input_ids for c in CHARS]
    assert all(len(i) == 1 for i in ids)
    assert len({i[0] for i in ids}) == len(CHARS)  # distinct ids


@pytest.mark.parametrize("text", [
    "Hello, World!",
    "  leading and trailing  ",
    "line one\nline two\n\n  indented\n",
    " ",
    "\n",
    "37+5-18=24",
    "<think>37+5=42,42-18=24</think>\\boxed{24}",
    "a<thin>b</thinkk>\\boxed \\boxed{{}}",
    "".join(CHARS),
])
def test_round_trip_exact(tok, text):
    """encode -> decode gives back exactly the text: spaces and newlines are kept, nothing is merged away."""
    ids = tok(text).input_ids
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_round_trip_random_printable(tok):
    """200 seeded random strings over the vocabulary's characters round-trip; without pieces, 1 char = 1 token."""
    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice(CHARS) for _ in range(rng.randint(1, 60)))
        ids = tok(text).input_ids
        assert tok.decode(ids) == text, repr(text)
        if not any(p in text for p in PIECES):
            assert len(ids) == len(text)


@pytest.mark.parametrize("piece", ["<think>", "</think>", "\\boxed{"])
def test_reasoning_pieces_are_single_tokens(tok, piece):
    ids = tok(piece).input_ids
    assert len(ids) == 1
    assert tok.convert_ids_to_tokens(ids) == [piece]
    # also inside text: 'x' + piece + 'y' is 3 tokens
    assert len(tok("x" + piece + "y").input_ids) == 3


def test_no_special_tokens_added_on_encode(tok):
    """There is no BOS: encoding with add_special_tokens=True adds nothing (tasks.templates.prompt_ids relies on it)."""
    assert tok.bos_token is None
    assert tok("1+2", add_special_tokens=True).input_ids == tok("1+2", add_special_tokens=False).input_ids


def test_special_ids(tok):
    """PAD=0 '<|pad|>', EOS=1 '<|eos|>'; the chat markers are single special tokens."""
    assert tok.pad_token == "<|pad|>" and tok.pad_token_id == 0
    assert tok.eos_token == "<|eos|>" and tok.eos_token_id == 1
    assert tok.convert_tokens_to_ids(["<|user|>", "<|assistant|>", "<|system|>"]) == [2, 3, 4]
    # special tokens are dropped by skip_special_tokens, kept otherwise
    ids = tok("<|user|>hi<|eos|>").input_ids
    assert ids[0] == 2 and ids[-1] == 1 and len(ids) == 4
    assert tok.decode(ids, skip_special_tokens=True) == "hi"


def test_chat_template(tok):
    user = [{"role": "user", "content": "Q"}]
    assert tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False) == "<|user|>Q<|assistant|>"
    assert tok.apply_chat_template(user, add_generation_prompt=False, tokenize=False) == "<|user|>Q"
    convo = [{"role": "system", "content": "S"}, {"role": "user", "content": "12+3"},
             {"role": "assistant", "content": "\\boxed{15}"}]
    assert tok.apply_chat_template(convo, tokenize=False) == "<|system|>S<|user|>12+3<|assistant|>\\boxed{15}<|eos|>"
    text = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    assert tok(text, add_special_tokens=False).input_ids == [2, tok.convert_tokens_to_ids("Q"), 3]


# ----------------------------------------------------------------------------- model


def test_model_config(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert isinstance(model, LlamaForCausalLM)
    c = model.config
    assert c.vocab_size == 104 and c.hidden_size == 32 and c.num_hidden_layers == 2
    assert c.num_attention_heads == 2 and c.intermediate_size == 64 and c.max_position_embeddings == 128
    assert c.eos_token_id == 1 and c.pad_token_id == 0
    assert c.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied after reload


def test_model_reload_gives_identical_logits(tiny_model_dir):
    """A model rebuilt with the same seed and the saved+reloaded one give bit-identical logits."""
    ref = build_model(build_tokenizer(), hidden_size=32, layers=2, heads=2, intermediate_size=64,
                      max_positions=128, seed=0).eval()
    loaded = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[2, 9, 80, 10, 3, 5, 20], [2, 15, 81, 16, 3, 6, 1]])
    with torch.no_grad():
        a, b = ref(input_ids=ids).logits, loaded(input_ids=ids).logits
    assert a.shape == (2, 7, 104)
    assert torch.equal(a, b)
    for name, p in ref.state_dict().items():
        assert torch.equal(p, loaded.state_dict()[name]), name


def test_build_model_is_seeded():
    tok = build_tokenizer()
    kw = dict(hidden_size=16, layers=1, heads=2, intermediate_size=32, max_positions=32)
    a, b, c = build_model(tok, seed=1, **kw), build_model(tok, seed=1, **kw), build_model(tok, seed=2, **kw)
    w = lambda m: m.model.embed_tokens.weight  # noqa: E731
    assert torch.equal(w(a), w(b))
    assert not torch.equal(w(a), w(c))


# ----------------------------------------------------------------------------- the shipped model


def test_shipped_tiny_reasoner():
    """models/tiny-reasoner: loads with the Auto classes, is a Llama, and stays under 20 MB on disk."""
    if not (SHIPPED / "config.json").is_file():
        pytest.skip(f"{SHIPPED} not built yet (rlreason sft configs/sft_tiny.yaml)")
    size = sum(f.stat().st_size for f in Path(SHIPPED).rglob("*") if f.is_file())
    assert size < 20 * 1024 * 1024, f"{size / 2**20:.1f} MB"
    tok = AutoTokenizer.from_pretrained(SHIPPED)
    model = AutoModelForCausalLM.from_pretrained(SHIPPED)
    assert isinstance(model, LlamaForCausalLM)
    assert isinstance(tok, TokenizersBackend)
    assert model.config.vocab_size == len(tok)
    assert tok.eos_token_id == model.config.eos_token_id
    text = "<think>1+2=3</think>\\boxed{3}\n two  spaces"
    assert tok.decode(tok(text).input_ids) == text


def test_the_tokenizers_max_length_is_the_models_context():
    """A long-context SFT model (max_positions 768) gets a tokenizer that knows it, so encoding a long
    demonstration raises no 'sequence length > 256' warning; the default stays 256 (the shipped model)."""
    from rlreason.tinymodel import build_tokenizer

    assert build_tokenizer().model_max_length == 256 and build_tokenizer(768).model_max_length == 768
