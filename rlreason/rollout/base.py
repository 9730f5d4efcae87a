"""The rollout-engine registry (re-exported by `rlreason.rollout`); engine modules register here."""
from typing import Dict, Sequence

from rlreason.registry import Registry
from rlreason.types import Completion

ENGINES = Registry("rollout engine")


def completion_metrics(completions: Sequence[Completion]) -> Dict[str, float]:
    """The metrics an engine's completions carry beyond their lengths: with tools, calls per sample, error and
    timeout rates and perf/tool_s (`rlreason.rollout.tools.tool_metrics`); {} otherwise."""
    from .tools import tool_metrics

    return tool_metrics(completions)
