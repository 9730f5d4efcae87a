"""Custom reward terms and tasks named by import path in a config, registered under that path at config load.

A name with a colon is an import path, `module.path:attr` or `path/to/file.py:attr`:

    data:
      task: "my_pkg.tasks:MyTask"                       # a subclass of rlreason.tasks.base.Task
    rewards:
      - {name: "my_pkg.rewards:my_fn", weight: 1.0, params: {tolerance: 0}}

`resolve_config(cfg, source)` (called by `config_validate.validate`, before any other rule) imports each such
name and registers the object in `TASKS` or `REWARDS` under the full path, so everything downstream (param
checks, routing, metrics named `reward/<name>/mean`) treats it like a built-in. A module path is imported
as usual, with the working directory added to `sys.path` when it is not found otherwise (as `python -m`
does); a file path is relative to the working directory. Names in a custom task's `default_rewards` are
resolved the same way. A failure is one `ConfigError` line naming the key and what failed.

The contract of a reward term: `fn(rollout: Rollout, **params) -> RewardOutput` with one score per
completion (completion i answers `rollout.sample_of(i)`), optional integer `counts`, and optional
`outcomes` (ok / wrong / timeout / error per completion); `step` and `is_correct` keywords, when declared,
are supplied by the trainer (see `rlreason.rewards.terms`).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

from rlreason.errors import ConfigError, first_line


def is_import_path(name: str) -> bool:
    """'pkg.mod:attr' or 'dir/file.py:attr' (a registered name never has a colon)."""
    return isinstance(name, str) and ":" in name


def load_object(path: str) -> Any:
    """The object an import path names; ValueError with one line saying what failed."""
    module_name, _, attr = path.rpartition(":")
    if not module_name or not attr:
        raise ValueError(f"'{path}' is not an import path 'module.path:name' or 'file.py:name'")
    module = _load_file(module_name) if module_name.endswith(".py") or "/" in module_name else _import(module_name)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name} has no '{attr}'")
        obj = getattr(obj, part)
    return obj


def _import(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        cwd = os.getcwd()
        top = module_name.split(".")[0]
        if err.name is None or top != err.name.split(".")[0] or cwd in sys.path:
            raise ValueError(f"importing '{module_name}' failed: {first_line(err)}") from None
        sys.path.append(cwd)  # `rlreason` runs as a script, whose sys.path lacks the working directory
        return _import(module_name)
    except Exception as err:  # an error inside the user's module
        raise ValueError(f"importing '{module_name}' failed: {type(err).__name__}: {first_line(err)}") from None


def _load_file(file_name: str):
    path = Path(file_name).resolve()
    if not path.is_file():
        raise ValueError(f"no such file {file_name} (relative paths start at the working directory {os.getcwd()})")
    name = "rlreason_plugin_" + re.sub(r"\W", "_", str(path))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ValueError(f"importing {file_name} failed: {type(err).__name__}: {first_line(err)}") from None
    return module


def register_reward(name: str) -> None:
    """Register the function `name` points to in REWARDS (no-op when already registered)."""
    from rlreason.rewards import REWARDS

    if name in REWARDS:
        return
    fn = load_object(name)
    if not callable(fn) or inspect.isclass(fn):
        raise ValueError(f"'{name}' is not a function fn(rollout, **params) -> RewardOutput")
    positional = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional:
        raise ValueError(f"'{name}' takes no positional argument; a reward term is fn(rollout, **params)")
    REWARDS.register(name)(fn)


def register_task(name: str) -> None:
    """Register the Task subclass `name` points to in TASKS, and the import-path names of its default_rewards."""
    from rlreason.tasks.base import TASKS, Task

    if name not in TASKS:
        cls = load_object(name)
        if not (inspect.isclass(cls) and issubclass(cls, Task)):
            raise ValueError(f"'{name}' is not a subclass of rlreason.tasks.base.Task")
        TASKS.register(name)(cls)
    for i, term in enumerate(TASKS.get(name).default_rewards):
        if is_import_path(term.get("name")):
            try:
                register_reward(term["name"])
            except ValueError as err:
                raise ValueError(f"default_rewards[{i}]: {err}") from None


def resolve_config(cfg, source: str) -> None:
    """Register every import-path name of a training config (data.task, data.mixture[i].task, rewards[i].name,
    data.mixture[i].rewards[j].name); ConfigError naming the key on failure."""
    named = [("data.task", cfg.data.task, register_task)]
    named += [(f"rewards[{i}].name", t.name, register_reward) for i, t in enumerate(cfg.rewards)]
    for i, m in enumerate(cfg.data.mixture):
        named.append((f"data.mixture[{i}].task", m.task, register_task))
        named += [(f"data.mixture[{i}].rewards[{j}].name", t.name, register_reward) for j, t in enumerate(m.rewards)]
    for key, name, register in named:
        if is_import_path(name):
            try:
                register(name)
            except ValueError as err:
                raise ConfigError(f"{source}: {key}: {err}") from None
    if is_import_path(cfg.data.task) and not cfg.data.mixture and not cfg.rewards:
        from rlreason.tasks.base import TASKS

        if not TASKS.get(cfg.data.task).default_rewards:
            raise ConfigError(f"{source}: rewards: task '{cfg.data.task}' declares no default_rewards; list its "
                              f"reward terms under rewards:")
