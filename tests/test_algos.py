"""rlreason.algos: the built-in registries hold this package's entries, each citing its paper, with an example."""
from __future__ import annotations

import pytest

from rlreason.algos import ADVANTAGES, KL_ESTIMATORS, LOSS_AGGS, LOSSES
from rlreason.algos.advantages import grpo
from rlreason.algos.aggregation import token_mean
from rlreason.algos.losses import ppo_clip
from rlreason.registry import UnknownName
from test_algos_advantages import NEW_ADVANTAGES  # the entries each module's tests cover
from test_algos_aggregation import NEW_AGGS
from test_algos_losses import NEW_LOSSES


def test_builtin_registries():
    """The algos registries hold the entries in this package, and unknown names list them."""
    assert ADVANTAGES.get("grpo") is grpo
    assert LOSSES.get("ppo_clip") is ppo_clip
    assert LOSS_AGGS.get("token_mean") is token_mean
    assert {"k1", "k2", "k3"} <= set(KL_ESTIMATORS.names())
    assert (grpo.scope, grpo.min_group_size, grpo.needs_critic) == ("group", 2, False)
    with pytest.raises(UnknownName, match="grpo"):
        ADVANTAGES.get("grpoo")
    with pytest.raises(ValueError):
        ADVANTAGES.register("grpo")(grpo)


@pytest.mark.parametrize("reg,name", [(ADVANTAGES, n) for n in NEW_ADVANTAGES] + [(LOSS_AGGS, n) for n in NEW_AGGS]
                         + [(LOSSES, n) for n in NEW_LOSSES])
def test_new_entries_registered_with_paper_and_example(reg, name):
    fn = reg.get(name)
    first = reg.doc(name)
    assert "arXiv" in first or "Williams 1992" in first, first
    assert "Example" in fn.__doc__
