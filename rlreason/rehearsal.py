"""A rehearsal of the real user's model on CPU: a small Qwen2-shaped instruct model built from a seed, no download.

Users train pretrained instruct models (Qwen2.5) whose tokenizer is a byte-level BPE, whose chat template
spans several tokens (`<|im_start|>role\\n ... <|im_end|>\\n`) and whose `generation_config.json` lists more
than one end-of-turn id. The shipped tiny reasoner (`rlreason.tinymodel`) has none of that. This module
builds a stand-in that has all of it, so the path can be exercised without the Hub:

- a byte-level BPE tokenizer (Qwen2's pre-tokenizer, NFC, byte-level decoder) trained with `tokenizers`
  on GSM8K-style text generated here from the seed, saved with `tokenizer_class: Qwen2Tokenizer` as Qwen's
  own files are; special tokens `<|endoftext|>` (also the pad token, as in Qwen2.5), `<|im_start|>`,
  `<|im_end|>` (the eos token, as in Qwen2.5-Instruct); Qwen's ChatML chat template with its default system
  turn;
- a randomly initialised `Qwen2ForCausalLM` (GQA, q/k/v biases, tied embeddings like Qwen2.5-0.5B; the
  embedding is padded to a multiple of 128 rows past the tokenizer, as Qwen's is);
- `generation_config.json` with `eos_token_id: [<|im_end|>, <|endoftext|>]`.

Build it (about 2 s; the tests build it into a temporary folder once per session):

    python -m rlreason.rehearsal OUT_DIR [--seed 0]

The model is untrained: it exists to run the code path (tokenisation, templates, stopping, bf16, both
engines), not to learn anything.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Iterator, List

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL = [ENDOFTEXT, IM_START, IM_END]  # ids 0, 1, 2
DEFAULT_SYSTEM = "You are a helpful assistant."

# ChatML as the Qwen2.5 instruct models write it (without the tool-calling branches): a default system turn
# when the conversation has none, `<|im_start|>role\n{content}<|im_end|>\n` per turn, and the assistant's
# opening line as the generation prompt.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

ONSETS = ["", "b", "br", "ch", "d", "f", "g", "gr", "h", "j", "k", "l", "m", "n", "p", "pl", "r", "s", "sh", "st",
          "t", "tr", "v", "w", "z"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "oo", "ou"]
CODAS = ["", "", "n", "r", "l", "s", "t", "ck", "m", "nd", "st"]
PLACES = ["box", "bag", "shelf", "basket", "jar", "crate", "tray", "row"]


def lexicon(rng: random.Random, size: int = 3000) -> List[str]:
    """`size` distinct made-up words of one to three syllables: the names and objects of the problems, so the
    BPE learns a few thousand subword pieces, as a real tokenizer has, from text made here."""
    words: dict = {}
    while len(words) < size:
        w = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.randint(1, 3)))
        words.setdefault(w, None)
    return list(words)


def _problem(rng: random.Random, words: List[str]) -> tuple:
    """(question, GSM8K-style answer with <<calc>> notes and '#### n', final number) for one random problem."""
    pick = lambda: words[min(int(rng.paretovariate(0.7)) - 1, len(words) - 1)]  # Zipf-like word frequencies
    name, item, place = pick().capitalize(), pick() + "s", rng.choice(PLACES)
    a, b, c = rng.randint(2, 60), rng.randint(2, 30), rng.randint(1, 40)
    kind = rng.randrange(4)
    if kind == 0:
        q = f"{name} has {a} {place}es with {b} {item} each. {name} gives away {c} {item}. How many {item} are left?"
        t = a * b
        steps = [f"{a} * {b} = <<{a}*{b}={t}>>{t} {item}.", f"{t} - {c} = <<{t}-{c}={t - c}>>{t - c}"]
        n = t - c
    elif kind == 1:
        q = f"A shop sold {a * 10:,} {item} on Monday and {b * 10} on Tuesday. How many {item} were sold in total?"
        n = a * 10 + b * 10
        steps = [f"{a * 10:,} + {b * 10} = <<{a * 10}+{b * 10}={n}>>{n:,} {item}."]
    elif kind == 2:
        q = f"{name} reads {a} pages of {item} a day. How many pages does {name} read in {b} days?"
        n = a * b
        steps = [f"{a} * {b} = <<{a}*{b}={n}>>{n}"]
    else:
        q = (f"There are {a * b} {item} shared equally among {b} friends of {name}. Each friend eats {min(c, a)} "
             f"of them. How many {item} does each friend have left?")
        n = a - min(c, a)
        steps = [f"{a * b} / {b} = <<{a * b}/{b}={a}>>{a} each,", f"{a} - {min(c, a)} = <<{a}-{min(c, a)}={n}>>{n}"]
    return q, "\n".join(steps) + f"\n#### {n:,}", n


def corpus(seed: int = 0, problems: int = 6000) -> Iterator[str]:
    """Training text for the tokenizer: GSM8K-style problems, their answers, and chat turns around them
    (role lines and a reasoning completion; the special tokens themselves are added, not learned)."""
    rng = random.Random(seed)
    words = lexicon(rng)
    yield " ".join(words)  # every made-up word at least once
    for _ in range(problems):
        q, a, n = _problem(rng, words)
        yield q
        yield a
        yield f"system\n{DEFAULT_SYSTEM}\nuser\n{q}\nassistant\n<think>\n{a}\n</think>\nThe answer is \\boxed{{{n}}}.\n"


def build_tokenizer(seed: int = 0, vocab_size: int = 4000):
    """A Qwen2-style byte-level BPE tokenizer trained on `corpus(seed)`, with the ChatML chat template."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX  # Qwen2's own split rule

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(seed), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=ENDOFTEXT, unk_token=None,
                                 clean_up_tokenization_spaces=False, model_max_length=512)
    hf.chat_template = CHAT_TEMPLATE
    return hf


def build_model(tokenizer, hidden_size: int = 128, layers: int = 4, heads: int = 4, kv_heads: int = 2,
                intermediate_size: int = 512, max_positions: int = 512, seed: int = 0):
    """A freshly initialised Qwen2ForCausalLM (about 1.5M parameters by default, bf16) with a Qwen2.5-style
    generation config: both end-of-turn ids, pad = bos = <|endoftext|>."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    end, im_end = tokenizer.convert_tokens_to_ids([ENDOFTEXT, IM_END])
    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=-(-len(tokenizer) // 128) * 128,  # padded past the tokenizer, as Qwen's embedding is
        hidden_size=hidden_size, intermediate_size=intermediate_size, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_positions,
        tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6, use_sliding_window=False,
        bos_token_id=end, eos_token_id=im_end, pad_token_id=end,
    )
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)  # stored in bf16, as Qwen2.5 checkpoints are
    model.generation_config = GenerationConfig(bos_token_id=end, eos_token_id=[im_end, end], pad_token_id=end)
    return model


def save_rehearsal(out: str, seed: int = 0) -> Path:
    """Build the tokenizer and model from `seed` and save both (with generation_config.json) into `out`."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(seed)
    model = build_model(tok, seed=seed)
    tok.save_pretrained(path)
    model.save_pretrained(path)
    _declare_qwen2_tokenizer(path)
    return path


def _declare_qwen2_tokenizer(path: Path) -> None:
    """Name `Qwen2Tokenizer` in tokenizer_config.json, as Qwen's own files do (it rebuilds the same pipeline)."""
    cfg_file = path / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg_file.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rlreason.rehearsal", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write the tokenizer, model and generation_config.json into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = save_rehearsal(args.out, args.seed)
    print(f"rehearsal model written to {path}")


if __name__ == "__main__":
    main()
