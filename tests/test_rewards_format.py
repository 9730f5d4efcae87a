"""rlreason.rewards.format: the format term on a table of completions and params."""
from __future__ import annotations

import pytest

from rlreason.rewards import REWARDS
from rlreason.types import Completion, Rollout, Sample

B = "\\boxed"


def completion(text: str) -> Completion:
    return Completion(text=text, token_ids=[1, 2], logprobs=[-0.1, -0.2], finish_reason="stop")


def rollout(texts: list[str], answers: list[str], group_size: int = 1) -> Rollout:
    samples = [Sample(id=f"s{i}", task="arithmetic", prompt="q=", answer=a) for i, a in enumerate(answers)]
    return Rollout(samples, [completion(t) for t in texts], group_size)


GOOD = "<think>12*11 = 132</think> The answer is " + B + "{132}."
FORMAT_CASES = [
    (GOOD, {}, 1.0),
    ("  \n" + GOOD, {}, 1.0),
    ("<think>12*11 = 132 " + B + "{132}", {}, 0.0),  # missing close tag
    ("<think>a</think><think>b</think> " + B + "{1}", {}, 0.0),  # two think blocks
    ("<think>12*11 = 132</think> 132", {}, 0.0),  # no boxed answer
    ("<think>12*11 = 132</think> 132", {"require_boxed": False}, 1.0),
    ("<think>  </think> " + B + "{132}", {}, 0.0),  # empty reasoning
    ("<think>12*11 = 132</think>  ", {"require_boxed": False}, 0.0),  # empty answer
    ("Sure! " + GOOD, {}, 0.0),  # open tag not first
    ("<think>x " + B + "{1}</think> done", {}, 0.0),  # box only inside the reasoning
    ("<think>x</think> " + B + "{1", {}, 0.0),  # unbalanced box
    ("12*11 = 132</think> " + B + "{132}", {"think_open": ""}, 1.0),  # prompt ends with <think>
    ("<r>12*11</r> " + B + "{132}", {"think_open": "<r>", "think_close": "</r>", "score": 0.5}, 0.5),
]


@pytest.mark.parametrize("text,params,expected", FORMAT_CASES)
def test_format_table(text, params, expected):
    out = REWARDS.get("format")(rollout([text], ["132"]), **params)
    assert out.scores == [expected]
