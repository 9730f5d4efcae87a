"""rlreason: online RL with verifiable rewards for step-by-step reasoners.

The Python API (the CLI is a thin layer over it):

>>> from rlreason import load_config, train            # doctest: +SKIP
>>> cfg = load_config("configs/default.yaml", ["train.steps=2", "run.name=from-python"])  # doctest: +SKIP
>>> summary = train(cfg)                                 # doctest: +SKIP

`train(cfg)` builds the run's parts (`rlreason.build.build(cfg)`, a typed `Parts`) and runs the loop
(`rlreason.trainer.train`); pass `parts=` to train parts you built or changed yourself. (`build` is the
module's name, so the function is imported from it: `from rlreason.build import build`.) Custom variants register by name in the
registries, then a config names them: `REWARDS` (reward terms), `TASKS`, `ADVANTAGES` (with
`rlreason.algos.advantages.estimator`), `LOSSES`, `LOSS_AGGS`, `KL_ESTIMATORS`, `IS_MODES`, `SAMPLERS`, `TEMPLATES`.
Names are imported on first use, so `import rlreason` stays light.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Dict

_EXPORTS = {
    "load_config": "rlreason.config_load",
    "Config": "rlreason.config",
    "Parts": "rlreason.build",
    "ADVANTAGES": "rlreason.algos",
    "LOSSES": "rlreason.algos",
    "LOSS_AGGS": "rlreason.algos",
    "KL_ESTIMATORS": "rlreason.algos",
    "IS_MODES": "rlreason.algos",
    "REWARDS": "rlreason.rewards",
    "TASKS": "rlreason.tasks",
    "SAMPLERS": "rlreason.sampling",
    "TEMPLATES": "rlreason.tasks.templates",
}
__all__ = ["train", *_EXPORTS]


def train(cfg, parts=None) -> Dict[str, Any]:
    """Train as `cfg` says (a `Config` from `load_config`); returns the run's summary (accuracy before and
    after, run directory). `parts` defaults to `build(cfg)`."""
    from rlreason.build import build
    from rlreason.trainer import train as run_loop

    return run_loop(cfg, parts if parts is not None else build(cfg))


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rlreason' has no attribute '{name}'")
