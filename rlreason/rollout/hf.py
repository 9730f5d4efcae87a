"""The transformers.generate engine: batched, KV-cached, sampling the trainer's own model in place."""
from __future__ import annotations

from typing import List

import torch

from rlreason.types import Completion, Rollout, Sample

from . import ENGINES


def render_prompt(sample: Sample, tokenizer) -> List[int]:
    """Prompt token ids: the chat template for `messages`, the raw text for `prompt`."""
    if sample.messages is not None:
        text = tokenizer.apply_chat_template(sample.messages, add_generation_prompt=True, tokenize=False)
    else:
        text = sample.prompt
    return tokenizer(text, add_special_tokens=sample.messages is None).input_ids


@ENGINES.register("hf")
class HFEngine:
    """transformers.generate on the policy model itself (no copy, so weight sync is free)."""

    def __init__(self, model, tokenizer, cfg=None):
        self.model, self.tok = model, tokenizer
        self.batch_size = getattr(cfg, "batch_size", 256)
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id

    def sleep(self) -> None:
        pass  # nothing to free: the engine is the policy model itself

    def sync_weights(self, model) -> None:
        self.model = model  # same object: nothing to copy

    def close(self) -> None:
        pass

    @torch.no_grad()
    def generate(self, samples: List[Sample], n: int, temperature: float = 1.0, top_p: float = 1.0,
                 max_new_tokens: int = 64, greedy: bool = False) -> Rollout:
        prompts = [render_prompt(s, self.tok) for s in samples]
        flat = [p for p in prompts for _ in range(n)]  # [N] prompt i // n
        completions: List[Completion] = []
        was_training = self.model.training
        self.model.eval()
        try:
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
        sampling = {} if greedy else {"temperature": temperature, "top_p": top_p, "top_k": 0}
        out = self.model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
            do_sample=not greedy, **sampling, pad_token_id=self.pad_id, eos_token_id=self.eos_id,
            return_dict_in_generate=True, output_logits=True,
        )
        gen = out.sequences[:, width:].cpu()  # [B, L]
        logits = torch.stack(out.logits, dim=1).float().cpu()  # [B, L, V] raw
        logp = torch.log_softmax(logits / (1.0 if greedy else temperature), -1)
        logp = logp.gather(-1, gen[..., None]).squeeze(-1)  # [B, L]
        is_eos = gen == self.eos_id
        has_eos = is_eos.any(-1)
        lengths = torch.where(has_eos, is_eos.float().argmax(-1) + 1, torch.full_like(has_eos, gen.shape[1], dtype=torch.long))
        result = []
        for row, L, stop in zip(range(gen.shape[0]), lengths.tolist(), has_eos.tolist()):
            toks = gen[row, :L].tolist()
            text = self.tok.decode(toks[:-1] if stop else toks, skip_special_tokens=True)
            result.append(Completion(text=text, token_ids=toks, logprobs=logp[row, :L].tolist(),
                                     finish_reason="stop" if stop else "length"))
        return result
