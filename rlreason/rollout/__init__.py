"""Rollout engines behind one protocol (DESIGN.md): `ENGINES.get(name)(model, tokenizer, cfg, dtype=...)`.

An engine offers:
- `generate(samples, n, temperature, top_p, max_new_tokens, greedy=False) -> Rollout`:
  n completions per sample, contiguous per sample, with sampled token ids and
  their log-probs at the sampling temperature;
- `sleep()`: called right before the policy update (free accelerator memory; may be a no-op);
- `sync_weights(model)`: make the engine sample from the trainer's current weights (and wake it);
- `close()`;
- for partial rollouts, `extend(contexts, budgets, temperature, top_p, keys, tag)`: at most budgets[i] more
  tokens after each context (`rlreason/rollout/partial.py`);
- for `rollout.max_staleness`, `snapshot()` (a copy of the current weights) and `detached()`: a view that a
  background thread samples with (`load_weights(snapshot)`, a `generator` seeding it, `generate`), see
  `rlreason/rollout/overlap.py`;
- `tools`: None, or a `rollout.tools.Tools`: completions then pause at each closed code block for a tool
  call whose output joins their token ids (`Completion.tool_mask`), `rlreason/rollout/tools.py`.

Engines: `hf` (our own KV-cached decoding loop on the policy itself) and `vllm` (colocated
vLLM; `rlreason.rollout.vllm` holds the project's only, lazy, `import vllm`).
`make_engine` also resolves `auto`: vLLM when it imports and CUDA is present, else HF.
"""
import importlib.util
import sys

from .base import ENGINES

from . import hf  # noqa: E402,F401  (registers "hf")
from . import vllm as vllm_engine  # noqa: E402  (registers "vllm"; imports vllm itself only when built)


def vllm_installed() -> bool:
    """Whether the `vllm` package is installed (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def resolve_engine(name: str) -> str:
    """`auto` -> 'vllm' when vLLM imports and a CUDA device is present, else 'hf'; other names unchanged.

    Example: on this project's CPU-only CI machine `resolve_engine("auto") == "hf"`.
    """
    if name != "auto":
        return name
    import torch

    if not torch.cuda.is_available() or not vllm_installed():
        return "hf"
    try:
        vllm_engine._import_vllm()
    except Exception:  # installed but broken (e.g. a CUDA/torch mismatch): fall back
        return "hf"
    return "vllm"


def make_engine(name: str, model, tokenizer, cfg, dtype: str = "float32", tools=None):
    """Build the engine `name` (`auto` resolved and logged in one line) on `model`; `cfg` is the rollout config,
    `dtype` the run's compute dtype (`model.dtype`: the weights are fp32 masters, sampling runs in `dtype`);
    `tools` (a `rlreason.rollout.tools.Tools`, or None) makes its rollouts multi-turn with tool calls."""
    picked = resolve_engine(name)
    if name == "auto":
        print(f"rollout.engine=auto: using '{picked}'"
              + (" (vLLM + CUDA)" if picked == "vllm" else " (vLLM with CUDA not available)"), file=sys.stderr)
    if picked == "hf" and getattr(cfg, "stop", None):
        from rlreason.errors import ConfigError

        raise ConfigError(f"rollout.stop {list(cfg.stop)} needs the vllm engine (the hf engine stops at EOS only)")
    engine = ENGINES.get(picked)(model, tokenizer, cfg, dtype=dtype)
    engine.tools = tools
    return engine
