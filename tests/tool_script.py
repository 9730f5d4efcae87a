"""A scripted model for the tool tests: a real LlamaForCausalLM (HF and vLLM load it from a folder) whose
weights make it a bigram table, so it writes a fixed tool-using completion token by token.

Its one layer outputs zero (attention and MLP projections are 0), so the last hidden state is the current
token's embedding, a one-hot vector; the untied output head maps each token to a logit `MARGIN` on its
successor in `NEXT`. The tokenizer is the project's character tokenizer plus whole pieces for the fences and
for the code, so every token of the script has a single successor:

    <|assistant|> <think> ```python\\n CODE \\n```  [tool output, appended by the engine, ends with \\n]
    \\n </think> \\boxed{ 4 2 } <|eos|>

Without tools the model stops after the closing fence (its successor is EOS).
"""
from __future__ import annotations

import string
from pathlib import Path
from typing import Dict, List

import torch

MARGIN = 40.0  # logit of the successor over 0 for every other token: sampling at temperature 1 is deterministic
FENCES = ["```python\n", "\n```"]


def script(code: str) -> List[str]:
    """The sampled tokens in order, from the first generated one (the tool output is not in it)."""
    return ["<think>", "```python\n", code, "\n```", "</think>", "\\boxed{", "4", "2", "}", "<|eos|>"]


def build_tokenizer(code: str):
    from tokenizers import AddedToken, Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    from rlreason.tinymodel import CHAT_TEMPLATE, SPECIAL

    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    pieces = ["<think>", "</think>", "\\boxed{", *FENCES, code]
    vocab = {t: i for i, t in enumerate(SPECIAL + pieces + chars)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, ignore_merges=True))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in pieces])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|eos|>", unk_token=None,
                                 clean_up_tokenization_spaces=False)
    hf.chat_template = CHAT_TEMPLATE
    hf.model_max_length = 256
    return hf


def build_model(tok, code: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    V = len(tok)
    H = 128
    assert V <= H, V
    cfg = LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=32, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=False,
                      rms_norm_eps=1e-6, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=None)
    model = LlamaForCausalLM(cfg)
    steps = ["<|assistant|>"] + script(code)
    steps.insert(steps.index("</think>"), "\n")  # the last token of the output block the engine appends
    ids = {t: tok.convert_tokens_to_ids(t) for t in steps}
    nxt: Dict[int, int] = {ids[a]: ids[b] for a, b in zip(steps, steps[1:])}
    nxt[ids["\n```"]] = tok.eos_token_id  # without a tool call the model stops after the closing fence
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.embed_tokens.weight[:, :] = torch.eye(V, H)
        model.model.norm.weight.fill_(1.0)
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        head = model.lm_head.weight  # [V, H]; the normed hidden state is sqrt(H) * one-hot
        for v in range(V):
            head[nxt.get(v, tok.eos_token_id), v] = MARGIN / H**0.5
    return model


def save_scripted(path: Path, code: str = "print(6*7)") -> str:
    """Write the scripted model whose code block is `code` (one token) to `path`; returns the path."""
    tok = build_tokenizer(code)
    model = build_model(tok, code)
    tok.save_pretrained(path)
    model.save_pretrained(path)
    return str(path)
