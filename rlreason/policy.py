"""Model loading and per-token log-probabilities (policy, frozen reference)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import torch

from rlreason.errors import ModelLoadError, first_line

REPO_ROOT = Path(__file__).resolve().parent.parent
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(path: str) -> str:
    """A local folder (tried from the working directory, then the repo root), else `path` as a Hub id ('org/name')."""
    for base in (Path.cwd(), REPO_ROOT):
        p = base / Path(path).expanduser()
        if p.is_dir():
            return str(p)
    if Path(path).is_absolute() or path.startswith((".", "~")) or path.count("/") != 1:
        raise ModelLoadError(f"model.path '{path}': no such folder (Hub ids look like 'org/name')")
    return path


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("model.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def load_model(path: str, dtype: str = "float32", device: str = "auto") -> Tuple[torch.nn.Module, object]:
    """(model, tokenizer) from a local folder or Hub id; the tokenizer pads on the left for generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_model_path(path)
    try:
        tok = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=DTYPES[dtype])
    except (OSError, ValueError) as err:  # missing files, or a folder that is not a model
        raise ModelLoadError(f"cannot load model '{path}': {first_line(err)}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model.to(pick_device(device)), tok


def stop_token_ids(model, tokenizer) -> List[int]:
    """Every id that ends a completion: the tokenizer's eos plus the `eos_token_id` of the model's
    `generation_config` (generation_config.json) and of its config, each an int, a list or None; sorted.

    Instruct models end a turn with several ids, e.g. Qwen2.5-Instruct's generation_config lists `<|im_end|>`
    and `<|endoftext|>` while its tokenizer names only `<|im_end|>`; both engines stop on all of them.
    Example: tokenizer eos 2, generation_config eos [2, 0] -> [0, 2].
    """
    found = {tokenizer.eos_token_id}
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        ids = getattr(source, "eos_token_id", None)
        found.update(ids if isinstance(ids, (list, tuple)) else [ids])
    found.discard(None)
    return sorted(int(i) for i in found)  # empty: no eos anywhere, every completion runs to max_new_tokens


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """[n, T] positions counted over real tokens only (padding takes 0), for left- or right-padded rows.

    Example: mask [[0, 1, 1], [1, 1, 0]] -> [[0, 0, 1], [0, 1, 1]].
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,  # [n, T]
    attention_mask: torch.Tensor,  # [n, T]
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """log p(ids[:, t] | ids[:, <t]) at position t (position 0 holds 0), and optionally the entropy there.

    Returns logp [n, T] (float32) and entropy [n, T] or None; the entropy carries a gradient only with
    `entropy_grad` (for an entropy bonus), else it is detached.
    Right-padded input: position ids come from the attention mask.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask),
                   use_cache=False).logits
    logits = logits[:, :-1].float() / temperature  # [n, T-1, V]
    lse = torch.logsumexp(logits, dim=-1)  # [n, T-1]
    picked = logits.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # [n, T-1]
    logp = torch.nn.functional.pad(picked - lse, (1, 0))  # [n, T]
    ent = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            p = torch.softmax(logits, -1)
            ent = torch.nn.functional.pad(lse - (p * logits).sum(-1), (1, 0))  # [n, T]
    return logp, ent


@contextmanager
def checkpointed_layers(model: torch.nn.Module) -> Iterator[int]:
    """While inside, the decoder layers with gradient checkpointing enabled (`model.gradient_checkpointing`)
    recompute their activations in backward; yields how many. transformers checkpoints a layer only when
    the layer's own `training` flag is set, and the policy stays in eval mode (no dropout, and generation
    keeps its KV cache), so the flag is set on those layer modules alone, not on their children (their
    dropout stays off), and put back on exit."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)
              and getattr(m, "gradient_checkpointing", False) is True and not m.training]
    for m in layers:
        m.training = True
    try:
        yield len(layers)
    finally:
        for m in layers:
            m.training = False
