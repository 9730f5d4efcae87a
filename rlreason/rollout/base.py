"""The rollout-engine registry (re-exported by `rlreason.rollout`); engine modules register here."""
from rlreason.registry import Registry

ENGINES = Registry("rollout engine")
