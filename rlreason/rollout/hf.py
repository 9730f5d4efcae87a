"""The HF engine: batched, KV-cached sampling of the trainer's own model in place (no copy, no sync).

Decoding is our own loop over the model's forward with a `DynamicCache`: a sequence leaves the batch (and
its rows leave the KV cache) as soon as it samples an EOS id, so the rest do not carry finished rows to the
longest completion ("per-sequence stopping"). Models whose cache cannot be a `DynamicCache` use
`transformers.generate` instead. Both report log p(token) under softmax(raw logits / temperature), what
the trainer computes by teacher forcing, so the first PPO ratio is 1.

"EOS" is every id of `rlreason.policy.stop_token_ids`: the tokenizer's eos and each `eos_token_id` of the
model's generation_config (an instruct model ends its turn with any of several ids, e.g. Qwen2.5's
`<|im_end|>` and `<|endoftext|>`). A completion that stopped ends with the id it sampled.
"""
from __future__ import annotations

import inspect
from typing import List

import torch

from rlreason.errors import DataError
from rlreason import precision
from rlreason.policy import position_ids, stop_token_ids
from rlreason.tasks.templates import prompt_ids
from rlreason.types import Completion, Rollout, Sample

from .base import ENGINES


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

    def sleep(self) -> None:
        pass  # nothing to free: the engine is the policy model itself

    def sync_weights(self, model) -> None:
        self.model = model  # same object: nothing to copy

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
        was_training = self.model.training
        self.model.eval()
        try:
            with precision.compute(self.dtype, next(self.model.parameters()).device):
                for start in range(0, len(flat), self.batch_size):
                    completions += self._generate_batch(flat[start : start + self.batch_size], temperature, top_p,
                                                        max_new_tokens, greedy)
        finally:
            self.model.train(was_training)
        return Rollout(samples=list(samples), completions=completions, group_size=n, prompt_ids=prompts)

    def _generate_batch(self, prompts: List[List[int]], temperature, top_p, max_new_tokens, greedy) -> List[Completion]:
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left padding
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        decode = self._decode if type(self.model)._supports_default_dynamic_cache() else self._decode_generate
        gen, logp, lengths, stopped = decode(ids.to(device), mask.to(device), 1.0 if greedy else temperature, top_p,
                                             max_new_tokens, greedy)
        result = []
        for row, L, stop in zip(range(gen.shape[0]), lengths.tolist(), stopped.tolist()):
            toks = gen[row, :L].tolist()
            text = self.tok.decode(toks[:-1] if stop else toks, skip_special_tokens=True)
            result.append(Completion(text=text, token_ids=toks, logprobs=logp[row, :L].tolist(),
                                     finish_reason="stop" if stop else "length"))
        return result

    def _decode(self, ids, mask, temperature, top_p, max_new_tokens, greedy):
        """Our decoding loop. Returns tokens [B, L], their log-probs [B, L], lengths [B] and stopped-at-EOS [B]."""
        from transformers import DynamicCache

        B, device = ids.shape[0], ids.device
        cache = DynamicCache(config=self.model.config)
        pos = position_ids(mask)
        last_only = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(self.model.forward).parameters else {}
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                            use_cache=True, **last_only).logits[:, -1]  # prefill: only the last position's logits
        stop_ids = torch.tensor(self.stop_ids, dtype=torch.long, device=device)
        toks = torch.full((B, max_new_tokens), self.pad_id, dtype=torch.long, device=device)
        logp = torch.zeros((B, max_new_tokens), device=device)
        lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)
        stopped = torch.zeros(B, dtype=torch.bool, device=device)
        alive = torch.arange(B, device=device)  # batch row -> original row
        next_pos = pos[:, -1] + 1
        for t in range(max_new_tokens):
            lp = torch.log_softmax(logits.float() / temperature, -1)  # [b, V] what the trainer computes
            nxt = self._pick(lp, top_p, greedy, suppress_eos=t < self.min_tokens)
            toks[alive, t] = nxt
            logp[alive, t] = lp.gather(-1, nxt[:, None]).squeeze(-1)
            done = torch.isin(nxt, stop_ids)
            if done.any():
                lengths[alive[done]] = t + 1
                stopped[alive[done]] = True
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
        return toks.cpu(), logp.cpu(), lengths.cpu(), stopped.cpu()

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
        return torch.multinomial(probs, 1).squeeze(-1)

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
