"""rlreason.rewards.format: the format term on a table of completions and params."""
from __future__ import annotations

import pytest

from rlreason.rewards import REWARDS
from test_rewards import B, GOOD, rollout  # noqa: E402  (the rewards package tests' completion builders)

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
