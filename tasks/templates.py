"""Prompt templates (`data.template`): how a task's question becomes what the model reads.

A sample carries either `prompt` (raw text, fed as is: base models) or
`messages` (chat turns, rendered by the tokenizer's chat template: instruct
models). This module owns that rendering: `prompt_text` (the text the model
reads) and `prompt_ids` (its token ids, what the rollout engines and SFT feed
the model; `prompt_token_len` counts them). The question is
`sample.meta["question"]` when the task sets it, else the last user turn or
the prompt. Templates:

- `task`: the task's own rendering (chat turns for every built-in task), plus
  `data.system_prompt` as a system turn when the sample is chat.
- `chat`: `[system?] + [user: question]`, rendered by the tokenizer's chat template.
- `r1_zero`: a plain-text conversation in the style of DeepSeek-R1-Zero's training
  template (DeepSeek-AI 2025, arXiv 2501.12948, Table 1), asking for reasoning in
  `<think></think>` and the answer in `\\boxed{}` (what `format` and `math_answer` check):

      >>> print(R1_ZERO.format(question="What is 2+3?"))  # doctest: +ELLIPSIS
      A conversation between User and Assistant. ...
      User: What is 2+3?
      Assistant:

- `plain`: the bare question as raw text (no chat markup; `system_prompt` is put
  on a line before it when set).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional

from rlreason.registry import Registry
from rlreason.types import Sample

TEMPLATES: Registry[Callable[[Sample, str], Sample]] = Registry("prompt template")

R1_ZERO = (
    "A conversation between User and Assistant. The User asks a question and the Assistant solves it. "
    "The Assistant first thinks the problem through step by step inside <think> </think> tags, then, after "
    "the closing tag, writes the final answer inside \\boxed{{}}, for example "
    "<think> reasoning here </think> \\boxed{{answer here}}.\n"
    "User: {question}\n"
    "Assistant:"
)


def question_of(sample: Sample) -> str:
    """The task's question: meta['question'], else the last user turn, else the raw prompt."""
    if "question" in sample.meta:
        return str(sample.meta["question"])
    if sample.messages:
        users = [m["content"] for m in sample.messages if m.get("role") == "user"]
        if users:
            return users[-1]
    return sample.prompt or ""


def _chat(sample: Sample, question: str, system_prompt: str) -> Sample:
    msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": question}]
    return dataclasses.replace(sample, prompt=None, messages=msgs)


@TEMPLATES.register("task")
def task_template(sample: Sample, system_prompt: str = "") -> Sample:
    """The task's own rendering; a chat sample gets `system_prompt` as a leading system turn."""
    if not system_prompt or sample.messages is None or any(m.get("role") == "system" for m in sample.messages):
        return sample
    return dataclasses.replace(sample, messages=[{"role": "system", "content": system_prompt}] + list(sample.messages))


@TEMPLATES.register("chat")
def chat_template(sample: Sample, system_prompt: str = "") -> Sample:
    """Instruct models: [system?] + user question, rendered by the tokenizer's chat template."""
    return _chat(sample, question_of(sample), system_prompt)


@TEMPLATES.register("r1_zero")
def r1_zero_template(sample: Sample, system_prompt: str = "") -> Sample:
    """Base models: a plain-text User/Assistant conversation asking for <think> reasoning and a \\boxed{} answer."""
    text = R1_ZERO.format(question=question_of(sample))
    return dataclasses.replace(sample, messages=None, prompt=(system_prompt + "\n" if system_prompt else "") + text)


@TEMPLATES.register("plain")
def plain_template(sample: Sample, system_prompt: str = "") -> Sample:
    """Base models: the bare question as raw text (system_prompt, when set, on a line before it)."""
    q = question_of(sample)
    return dataclasses.replace(sample, messages=None, prompt=(system_prompt + "\n" + q) if system_prompt else q)


def apply_template(sample: Sample, name: str, system_prompt: str = "") -> Sample:
    """`sample` re-rendered by template `name` (the original is not changed)."""
    return TEMPLATES.get(name)(sample, system_prompt)


def prompt_text(sample: Sample, tokenizer: Optional[object] = None) -> str:
    """The exact text the model reads: the raw prompt, or the chat turns through the tokenizer's chat template.

    Chat samples need the tokenizer (for its chat template); `prompt_ids` tokenises this text.
    """
    if sample.messages is None:
        return sample.prompt
    if tokenizer is None:
        raise ValueError(f"sample {sample.id!r} is a chat sample: rendering it needs the model's tokenizer")
    return tokenizer.apply_chat_template(sample.messages, add_generation_prompt=True, tokenize=False)


def prompt_ids(sample: Sample, tokenizer) -> List[int]:
    """The prompt's token ids, as the rollout engines and SFT feed them to the model.

    `prompt_text` tokenised; the tokenizer adds its special tokens (e.g. BOS) to a
    raw-text prompt only, since a chat template writes its own.
    """
    return tokenizer(prompt_text(sample, tokenizer), add_special_tokens=sample.messages is None).input_ids


def prompt_token_len(sample: Sample, tokenizer) -> int:
    """Number of prompt tokens: `len(prompt_ids(sample, tokenizer))`."""
    return len(prompt_ids(sample, tokenizer))
