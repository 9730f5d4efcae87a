"""The project's own tiny reasoner: a character tokenizer and a small Llama model built from scratch.

The Hugging Face Hub is out of reach in CI, so the default model is made here
(`rlreason sft configs/sft_tiny.yaml` rebuilds it) and committed under
`models/tiny-reasoner`. Both halves load with AutoTokenizer /
AutoModelForCausalLM, and Llama is an architecture vLLM serves. (Not Qwen2: transformers 5
forces its own Qwen2Tokenizer on that model type, which drops spaces and newlines.)
"""
from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models

SPECIAL = ["<|pad|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>"]
# Multi-character pieces that recur in every reasoning trace, one token each.
PIECES = ["<think>", "</think>", "\\boxed{"]
CHARS = [c for c in string.printable if c not in "\t\r\x0b\x0c"]  # 96: letters, digits, punctuation, space, newline

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}<|system|>{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% else %}<|assistant|>{{ m['content'] }}<|eos|>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(max_length: int = 256):
    """A character-level fast tokenizer (BPE with no merges) with chat template and special tokens;
    `max_length` is its `model_max_length` (the model's context, so long demonstrations raise no warning)."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL + PIECES + CHARS)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, ignore_merges=True))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in PIECES])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|eos|>", unk_token=None, clean_up_tokenization_spaces=False
    )
    hf.chat_template = CHAT_TEMPLATE
    hf.model_max_length = max_length
    return hf


def build_model(tokenizer, hidden_size: int = 128, layers: int = 4, heads: int = 4, intermediate_size: int = 512,
                max_positions: int = 256, seed: int = 0):
    """A freshly initialised LlamaForCausalLM sized for a CPU (about 1M parameters by default)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        torch_dtype="float32",
    )
    return LlamaForCausalLM(cfg)
