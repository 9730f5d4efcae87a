"""rlreason.tasks.templates: templates render the question; prompt ids of chat and raw-text samples."""
from __future__ import annotations

import pytest

from rlreason.policy import REPO_ROOT
from rlreason.tasks.templates import R1_ZERO, apply_template, prompt_ids, prompt_text, prompt_token_len
from rlreason.types import Sample

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"


def test_templates_render_question():
    s = Sample(id="x", task="t", answer="5", messages=[{"role": "user", "content": "2+3?"}], meta={"question": "2+3?"})
    assert apply_template(s, "task") is s
    assert apply_template(s, "task", "Be brief.").messages == [{"role": "system", "content": "Be brief."},
                                                               {"role": "user", "content": "2+3?"}]
    assert apply_template(s, "chat", "S").messages[0] == {"role": "system", "content": "S"}
    r1 = apply_template(s, "r1_zero")
    assert r1.messages is None and r1.prompt == R1_ZERO.format(question="2+3?")
    assert r1.prompt.endswith("User: 2+3?\nAssistant:") and "<think>" in r1.prompt and "\\boxed{" in r1.prompt
    assert apply_template(s, "plain").prompt == "2+3?" and apply_template(s, "plain", "Hi").prompt == "Hi\n2+3?"
    # the question is read from a plain prompt too, and the original sample is untouched
    p = Sample(id="y", task="t", answer="1", prompt="0+1?")
    assert apply_template(p, "chat").messages == [{"role": "user", "content": "0+1?"}] and p.messages is None


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
def test_prompt_ids_chat_and_raw_text():
    """messages -> the chat template with the generation prompt; prompt -> the raw text; no special tokens added."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(SHIPPED))
    chat = Sample(id="x", task="t", answer="3", messages=[{"role": "user", "content": "1+2"}])
    assert prompt_text(chat, tok) == "<|user|>1+2<|assistant|>"
    ids = prompt_ids(chat, tok)
    assert ids == [2, 9, 80, 10, 3] == [2] + tok("1+2", add_special_tokens=False).input_ids + [3]
    raw = Sample(id="y", task="t", answer="403", prompt="12*34-5=")
    assert prompt_ids(raw, tok) == [9, 10, 79, 11, 12, 82, 13, 88] and tok.decode(prompt_ids(raw, tok)) == "12*34-5="
    assert prompt_ids(Sample(id="z", task="t", answer="3", prompt="<|user|>1+2<|assistant|>"), tok) == ids
    for s in (chat, raw, apply_template(chat, "chat", "sys"), apply_template(chat, "r1_zero")):
        assert prompt_token_len(s, tok) == len(prompt_ids(s, tok)) > 0
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        prompt_text(chat)
