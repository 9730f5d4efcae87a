"""The HF engine: batched, KV-cached sampling of the trainer's own model in place (no copy, no sync).

Decoding is our own loop over the model's forward with a `DynamicCache` whose appends are amortised O(1)
(`kv_cache.growing_cache`): a sequence leaves the batch (and its rows leave the KV cache) as soon as it
samples an EOS id, so the rest do not carry finished rows to the longest completion ("per-sequence
stopping"). Models whose cache cannot be a `DynamicCache` use
`transformers.generate` instead. Both report log p(token) under softmax(raw logits / temperature), what
the trainer computes by teacher forcing, so the first PPO ratio is 1.

"EOS" is every id of `rlreason.policy.stop_token_ids`: the tokenizer's eos and each `eos_token_id` of the
model's generation_config (an instruct model ends its turn with any of several ids, e.g. Qwen2.5's
`<|im_end|>` and `<|endoftext|>`). A completion that stopped ends with the id it sampled.

With tools (`self.tools`, `rlreason/rollout/tools.py`) a sequence also leaves the batch when it closes a code
block; after the calls, the paused sequences are prefilled again from their exact ids (prompt + sampled +
tool output) and decoding goes on, each within its own remaining budget.
"""
from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

import torch

from rlreason.errors import ConfigError, DataError
from rlreason import precision
from rlreason.policy import position_ids, stop_token_ids
from rlreason.tasks.templates import prompt_ids
from rlreason.types import Completion, Rollout, Sample

from .base import ENGINES
from .kv_cache import growing_cache
from .kv_rows import RowKV, merged_cache, row_kv
from .tools import Piece, Trace, multi_turn


@ENGINES.register("hf")
class HFEngine:
    """The policy model itself (no copy, so weight sync is free), decoded by our own KV-cached loop in which a sequence stops at its EOS."""

    def __init__(self, model, tokenizer, cfg=None, dtype: str = "float32"):
        self.model, self.tok = model, tokenizer
        self.dtype = dtype  # model.dtype: bfloat16 generates under bf16 autocast over the fp32 weights
        self.batch_size = getattr(cfg, "batch_size", 256)
        self.stop_ids = stop_token_ids(model, tokenizer)  # sampling any of them ends the completion
        self.pad_id = tokenizer.pad_token_id
        self.min_tokens = 0  # every EOS id is suppressed before this many tokens (benchmarks force full-length)
        self.tools = None  # rollout.tools: a `Tools` (set by make_engine), None = no tool calls
        self.generator = None  # the torch.Generator sampling draws from (None = torch's global one)
        self._kept, self._kept_tag = {}, None  # partial rollouts: KV caches of rows at their budget (`extend`)

    def sleep(self) -> None:
        pass  # nothing to free: the engine is the policy model itself

    def detached(self) -> "HFEngine":
        """An engine on its own copy of the weights (`rollout.max_staleness`: it generates in a background thread
        while the trainer updates the policy; `load_weights` sets its weights)."""
        engine = HFEngine(copy.deepcopy(self.model), self.tok, dtype=self.dtype)
        engine.batch_size, engine.stop_ids, engine.min_tokens = self.batch_size, self.stop_ids, self.min_tokens
        engine.tools = self.tools  # stateless between calls (each call has its own ToolClock)
        return engine

    def snapshot(self) -> Dict[str, torch.Tensor]:
        """A copy of the policy's current weights (`rollout.max_staleness`: what a rollout generated ahead samples)."""
        return {n: v.detach().clone() for n, v in self.model.state_dict().items()}

    @torch.no_grad()
    def load_weights(self, state) -> None:
        """Copy a state dict (a snapshot of the policy's weights) into this engine's model."""
        self.model.load_state_dict(state)

    def sync_weights(self, model) -> None:
        self.model = model  # same object: nothing to copy
        self._kept, self._kept_tag = {}, None  # partial rollouts' kept caches are the old weights': free them now

    def close(self) -> None:
        pass

    @torch.no_grad()
    def generate(self, samples: List[Sample], n: int, temperature: float = 1.0, top_p: float = 1.0,
                 max_new_tokens: int = 64, greedy: bool = False) -> Rollout:
        prompts = [prompt_ids(s, self.tok) for s in samples]
        context = getattr(self.model.config, "max_position_embeddings", None)
        for s, p in zip(samples, prompts):  # cheap guard: the prefill of a prompt past the context can take gigabytes
            if context and len(p) > context:
                raise DataError(f"sample {s.id!r}: prompt is {len(p)} tokens, over the model's context of {context}")
        flat = [p for p in prompts for _ in range(n)]  # [N] prompt i // n
        completions: List[Completion] = []
        with self._sampling():
            if self.tools is not None:
                completions = self._generate_with_tools(flat, temperature, top_p, max_new_tokens, greedy)
            else:
                for start in range(0, len(flat), self.batch_size):
                    completions += self._generate_batch(flat[start : start + self.batch_size], temperature,
                                                        top_p, max_new_tokens, greedy)
        return Rollout(samples=list(samples), completions=completions, group_size=n, prompt_ids=prompts)

    @contextmanager
    def _sampling(self) -> Iterator[None]:
        """Eval mode and the run's compute precision for the block; the model's mode restored after."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), precision.compute(self.dtype, next(self.model.parameters()).device):
                yield
        finally:
            self.model.train(was_training)

    def extend(self, contexts: List[List[int]], budgets: List[int], temperature: float = 1.0, top_p: float = 1.0,
               keys: Optional[List] = None, tag=None) -> List[Piece]:
        """Partial rollouts (`rlreason/rollout/partial.py`): sample at most budgets[i] more tokens after each row's
        exact ids (prompt + its tokens so far). Returns per row (new ids, their log-probs, "stop" at an EOS id
        else "length"). With `keys` (one per row) and `tag` (the weights' version), a row that left the previous
        call's batch at its budget under the same tag continues from the KV cache it had (`kv_rows.py`);
        every other row is prefilled again under the current weights."""
        if not type(self.model)._supports_default_dynamic_cache():
            raise ConfigError(f"rollout.partial_tokens needs a model whose cache is a DynamicCache with the hf engine "
                              f"({type(self.model).__name__} is not)")
        kept = self._kept if keys is not None and tag is not None and tag == self._kept_tag else {}
        self._kept, self._kept_tag = {}, tag
        out: List[Piece] = [None] * len(contexts)
        with self._sampling():
            for rows in self._buckets([len(c) for c in contexts]):
                pieces = self._extend_batch([contexts[i] for i in rows], [budgets[i] for i in rows], temperature,
                                            top_p, None if keys is None else [keys[i] for i in rows], kept)
                for i, piece in zip(rows, pieces):
                    out[i] = piece
        return out

    def _buckets(self, lengths: List[int]) -> List[List[int]]:
        """Row indices in batches of similar context length (the longest at most twice the shortest, at most
        `batch_size` rows): carried samples and fresh prompts padded to one width would attend over padding."""
        out: List[List[int]] = []
        for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
            if out and len(out[-1]) < self.batch_size and lengths[i] <= 2 * lengths[out[-1][0]]:
                out[-1].append(i)
            else:
                out.append([i])
        return out

    def _extend_batch(self, contexts, budgets, temperature, top_p, keys, kept) -> List[Piece]:
        device = next(self.model.parameters()).device
        limit = torch.tensor(budgets, device=device)
        if keys is None or min(map(len, contexts)) < 2:
            ids, mask = self._left_pad(contexts)
            gen, logp, lengths, stopped = self._decode(ids, mask, temperature, top_p, int(limit.max()), False, limit)[:4]
        else:
            cache, mask = merged_cache(self.model.config, self._row_caches(contexts, keys, kept))
            pos = mask.sum(-1)  # [B] the position of each row's last id, fed first
            mask = torch.cat([mask, mask.new_ones((len(contexts), 1))], 1)
            last = torch.tensor([c[-1] for c in contexts], device=device)
            logits = self.model(input_ids=last[:, None], attention_mask=mask, position_ids=pos[:, None],
                                past_key_values=cache, use_cache=True).logits[:, -1]

            def leave(cache, rows, alive, mask):  # a row at its budget: keep its cache for the next round
                for j in rows.nonzero().flatten().tolist():
                    self._kept[keys[int(alive[j])]] = row_kv(cache, j, int(mask[j].sum()))

            gen, logp, lengths, stopped = self._loop(cache, logits, mask, pos + 1, temperature, top_p,
                                                     int(limit.max()), False, limit, leave=leave)[:4]
        return [(gen[i, :L].tolist(), logp[i, :L].tolist(), "stop" if s else "length")
                for i, (L, s) in enumerate(zip(lengths.tolist(), stopped.tolist()))]

    def _row_caches(self, contexts, keys, kept) -> List[RowKV]:
        """Each row's keys and values over its context but the last id: kept from the previous round when they
        cover exactly that, else from one prefill of the other rows together."""
        rows = [kept.get(k) for k in keys]
        rows = [r if r is not None and r[0][0].shape[1] == len(c) - 1 else None for r, c in zip(rows, contexts)]
        todo = [i for i, r in enumerate(rows) if r is None]
        if todo:
            ids, mask = self._left_pad([contexts[i][:-1] for i in todo])
            cache = growing_cache(self.model.config)
            self._prefill(ids, mask, position_ids(mask), cache)
            for j, i in enumerate(todo):
                rows[i] = row_kv(cache, j, int(mask[j].sum()))
        return rows

    def _left_pad(self, prompts: List[List[int]]):
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left padding
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        return ids.to(device), mask.to(device)

    def _generate_with_tools(self, prompts: List[List[int]], temperature, top_p, max_new_tokens, greedy) -> List[Completion]:
        """Multi-turn decoding (`tools.multi_turn`): each step decodes the unfinished traces in batches."""
        if not type(self.model)._supports_default_dynamic_cache():
            raise ConfigError(f"rollout.tools needs a model whose cache is a DynamicCache with the hf engine "
                              f"({type(self.model).__name__} is not); use rollout.engine=vllm")

        def step(traces: List[Trace]) -> List[Piece]:
            out: List[Piece] = []
            for start in range(0, len(traces), self.batch_size):
                out += self._step(traces[start : start + self.batch_size], temperature, top_p, greedy)
            return out

        return [t.completion(self.tok, self.stop_ids) for t in multi_turn(prompts, max_new_tokens, step, self.tools)]

    def _step(self, traces: List[Trace], temperature, top_p, greedy) -> List[Piece]:
        """Continue each trace from its exact ids until EOS ("stop"), its budget ("length"), or a closed code block
        while it may still call a tool ("pause")."""
        ids, mask = self._left_pad([t.context() for t in traces])
        limit = torch.tensor([t.left() for t in traces], device=ids.device)
        tools = self.tools

        def pause(row: int, new_ids: torch.Tensor) -> bool:  # new_ids [l]: the row's ids sampled in this step
            if int(new_ids[-1]) not in tools.fence_ids or not tools.may_call(traces[row]):
                return False
            return tools.closes_block(traces[row], new_ids.tolist())

        gen, logp, lengths, stopped, paused = self._decode(ids, mask, 1.0 if greedy else temperature, top_p,
                                                           int(limit.max()), greedy, limit, pause)
        return [(gen[i, :L].tolist(), logp[i, :L].tolist(), "stop" if s else "pause" if p else "length")
                for i, (L, s, p) in enumerate(zip(lengths.tolist(), stopped.tolist(), paused.tolist()))]

    def _generate_batch(self, prompts: List[List[int]], temperature, top_p, max_new_tokens, greedy) -> List[Completion]:
        ids, mask = self._left_pad(prompts)
        decode = self._decode if type(self.model)._supports_default_dynamic_cache() else self._decode_generate
        gen, logp, lengths, stopped = decode(ids, mask, 1.0 if greedy else temperature, top_p, max_new_tokens,
                                             greedy)[:4]
        result = []
        for row, L, stop in zip(range(gen.shape[0]), lengths.tolist(), stopped.tolist()):
            toks = gen[row, :L].tolist()
            text = self.tok.decode(toks[:-1] if stop else toks, skip_special_tokens=True)
            result.append(Completion(text=text, token_ids=toks, logprobs=logp[row, :L].tolist(),
                                     finish_reason="stop" if stop else "length"))
        return result

    def _decode(self, ids, mask, temperature, top_p, max_new_tokens, greedy, limit=None, pause=None):
        """Our decoding loop. Returns tokens [B, L], their log-probs [B, L], lengths [B], stopped-at-EOS [B] and
        paused [B]. `limit` [B]: each row's own token budget (<= max_new_tokens); `pause(row, ids so far)`: a
        row for which it is true after a token leaves the batch there (a closed code block)."""
        cache = growing_cache(self.model.config)  # a DynamicCache whose appends do not copy the whole cache
        pos = position_ids(mask)
        logits = self._prefill(ids, mask, pos, cache)
        return self._loop(cache, logits, mask, pos[:, -1] + 1, temperature, top_p, max_new_tokens, greedy, limit, pause)

    def _prefill(self, ids, mask, pos, cache) -> torch.Tensor:
        """Logits [B, V] after each row's ids; their keys and values go into `cache`."""
        last_only = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(self.model.forward).parameters else {}
        return self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                          use_cache=True, **last_only).logits[:, -1]  # prefill: only the last position's logits

    def _loop(self, cache, logits, mask, next_pos, temperature, top_p, max_new_tokens, greedy, limit=None,
              pause=None, leave=None):
        """The decoding loop of `_decode` from a filled `cache`, the next-token `logits` [B, V], the attention
        `mask` [B, W] and next positions [B]. `leave(cache, rows, alive, mask)`: called as rows [b] (bool) reach
        their limit, before they leave the cache (`alive`: batch row -> original row)."""
        B, device = logits.shape[0], logits.device
        stop_ids = torch.tensor(self.stop_ids, dtype=torch.long, device=device)
        toks = torch.full((B, max_new_tokens), self.pad_id, dtype=torch.long, device=device)
        logp = torch.zeros((B, max_new_tokens), device=device)
        lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)
        stopped = torch.zeros(B, dtype=torch.bool, device=device)
        paused = torch.zeros(B, dtype=torch.bool, device=device)
        alive = torch.arange(B, device=device)  # batch row -> original row
        for t in range(max_new_tokens):
            lp = torch.log_softmax(logits.float() / temperature, -1)  # [b, V] what the trainer computes
            nxt = self._pick(lp, top_p, greedy, suppress_eos=t < self.min_tokens)
            toks[alive, t] = nxt
            logp[alive, t] = lp.gather(-1, nxt[:, None]).squeeze(-1)
            done = torch.isin(nxt, stop_ids)
            if limit is not None:
                done = self._pause_or_limit(done, alive, toks, t, limit, pause, paused)
            if done.any():
                lengths[alive[done]] = t + 1
                stopped[alive[done]] = torch.isin(nxt[done], stop_ids)
                if leave is not None:
                    leave(cache, done & ~torch.isin(nxt, stop_ids), alive, mask)
                keep = (~done).nonzero().squeeze(-1)
                if len(keep) == 0:
                    break
                cache.batch_select_indices(keep)  # finished rows leave the batch and the KV cache
                alive, nxt, mask, next_pos = alive[keep], nxt[keep], mask[keep], next_pos[keep]
            if t == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], 1)
            logits = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                                past_key_values=cache, use_cache=True).logits[:, -1]
            next_pos = next_pos + 1
        return toks.cpu(), logp.cpu(), lengths.cpu(), stopped.cpu(), paused.cpu()

    @staticmethod
    def _pause_or_limit(done, alive, toks, t: int, limit, pause, paused):
        """`done` [b] (EOS) plus the rows that reached their own limit or, not at EOS, paused (marked in `paused`)."""
        if pause is not None:
            for j in (~done).nonzero().squeeze(-1).tolist():
                row = int(alive[j])
                if pause(row, toks[row, : t + 1]):
                    done[j] = paused[row] = True
        return done | (t + 1 >= limit[alive])

    def _pick(self, lp: torch.Tensor, top_p: float, greedy: bool, suppress_eos: bool) -> torch.Tensor:
        """Next tokens [b] from log-probs [b, V]: argmax, or a sample from the nucleus (top_p < 1) with every EOS
        id masked when `suppress_eos` (the reported log-prob stays that of the unmasked distribution)."""
        if suppress_eos:
            lp = lp.clone()
            lp[:, self.stop_ids] = -float("inf")
        if greedy:
            return lp.argmax(-1)
        probs = lp.exp()
        if top_p < 1.0:  # keep the most likely tokens up to mass top_p (the one that crosses it included)
            sorted_p, order = probs.sort(-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p >= top_p
            drop[:, 0] = False
            probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)

    def _decode_generate(self, ids, mask, temperature, top_p, max_new_tokens, greedy):
        """transformers.generate, for models whose cache is not a DynamicCache; same outputs as `_decode`."""
        sampling = {} if greedy else {"temperature": temperature, "top_p": top_p, "top_k": 0}
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=not greedy, **sampling,
            pad_token_id=self.pad_id, eos_token_id=self.stop_ids or None, min_new_tokens=self.min_tokens,
            return_dict_in_generate=True, output_logits=True,
        )
        gen = out.sequences[:, ids.shape[1]:].cpu()  # [B, L]
        logits = torch.stack(out.logits, dim=1).float().cpu()  # [B, L, V] raw
        logp = torch.log_softmax(logits / temperature, -1).gather(-1, gen[..., None]).squeeze(-1)  # [B, L]
        is_eos = torch.isin(gen, torch.tensor(self.stop_ids, dtype=torch.long))  # pad after a stop may be one too
        stopped = is_eos.any(-1)
        lengths = torch.where(stopped, is_eos.float().argmax(-1) + 1, torch.full_like(stopped, gen.shape[1], dtype=torch.long))
        return gen, logp, lengths, stopped
