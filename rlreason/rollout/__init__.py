"""Rollout engines behind one protocol (DESIGN.md): `ENGINES.get(name)(model, tokenizer, cfg)`.

An engine offers:
- `generate(samples, n, temperature, top_p, max_new_tokens, greedy=False) -> Rollout`:
  n completions per sample, contiguous per sample, with sampled token ids and
  their log-probs at the sampling temperature;
- `sync_weights(model)`: make the engine sample from the trainer's current weights;
- `close()`.
"""
from rlreason.registry import Registry

ENGINES = Registry("rollout engine")

from . import hf  # noqa: E402,F401  (registers "hf")
