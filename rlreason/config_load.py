"""Loading configs: OmegaConf merges schema <- YAML file (with `base:` chains) <- `key=value` overrides."""
from __future__ import annotations

import logging
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlreason.config import Config
from rlreason.errors import ConfigError, first_line


def _format_omegaconf_error(err: OmegaConfBaseException, source: str) -> str:
    key = getattr(err, "full_key", None) or ""
    msg = str(getattr(err, "msg", None) or err).splitlines()[0]
    if "not in" in msg and key:
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        return f"{source}: unknown key '{key}'" + (f" (under '{parent}')" if parent else "")
    return f"{source}: key '{key}': {msg}" if key else f"{source}: {msg}"


def _merge(base, other, source: str):
    """`other` over `base`. When `other` switches data.task to another task, the earlier task's data.params
    are dropped first (they belong to that task): `data.task=jsonl data.params.path=x.jsonl` over a config of
    task `hf` gives jsonl's params only, instead of `hf`'s params plus a path."""
    task = OmegaConf.select(other, "data.task", default=None) if OmegaConf.is_dict(other) else None
    if task is not None and task != OmegaConf.select(base, "data.task", default=None) and "data" in base:
        base = OmegaConf.merge(base, {})  # a copy
        base.data.params = {}
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as err:
        raise ConfigError(_format_omegaconf_error(err, source)) from None


def _yaml_chain(path: Path, seen: tuple = ()) -> List[tuple]:
    """[(file, data)] from the outermost `base:` to `path`: a YAML may name `base: other.yaml`
    (relative to itself), whose values it overrides."""
    of = f" (the base of {seen[-1]})" if seen else ""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file{of}")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: circular 'base:' chain")
    kind = _top_kind(path)  # OmegaConf reads an empty file as {}, a string as a key, and refuses a number
    if kind:
        raise ConfigError(f"{path}: expected a mapping of keys at the top, got {kind}{of}")
    try:
        data = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends
        raise ConfigError(f"{path}: not valid YAML: {first_line(err)}{of}") from None
    base = data.pop("base", None) if OmegaConf.is_dict(data) else None
    if base is None:
        return [(path, data)]
    if not isinstance(base, str):
        raise ConfigError(f"{path}: key 'base': expected a path to another YAML file")
    return _yaml_chain(path.parent / base, seen + (path.resolve(),)) + [(path, data)]


def _top_kind(path: Path) -> Optional[str]:
    """What a YAML file holds at the top when it is not a mapping ("a list", "a number"...), else None
    (a mapping, an empty file, or text that is not YAML)."""
    import yaml

    try:
        top = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if top is None or isinstance(top, dict):  # an empty (or comment-only) file: no keys, every default
        return None
    names = {list: "a list", str: "a string", bool: "true/false", int: "a number", float: "a number"}
    return names.get(type(top), f"a {type(top).__name__}")


def load_config(path: Optional[str], overrides: List[str] = (), schema: type = Config):
    """Merge schema <- YAML file <- `key=value` overrides, then validate.

    Returns an instance of `schema` (plain dataclasses).
    """
    cfg = OmegaConf.structured(schema)
    source = "defaults"
    if path:
        for p, data in _yaml_chain(Path(path)):
            cfg = _merge(cfg, data, str(p))
        source = path
    for item in sorted(overrides, key=lambda x: not x.startswith("data.task=")):  # a task switch first (see _merge)
        if "=" not in item:
            raise ConfigError(f"override '{item}': expected key=value")
        key = item.split("=", 1)[0]
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__" and "." in key:
            parent = key.rsplit(".", 1)[0]
            node = OmegaConf.select(cfg, parent, default=None)
            if node is None or not OmegaConf.is_dict(node) or OmegaConf.get_type(node) is not dict:
                raise ConfigError(f"override '{item}': unknown key '{key}'")
        try:
            other = OmegaConf.from_dotlist([item])
        except OmegaConfBaseException as err:
            raise ConfigError(f"override '{item}': {first_line(err)}") from None
        cfg = _merge(cfg, other, f"override '{item}'")
    obj = OmegaConf.to_object(cfg)
    from rlreason.config_validate import advice, validate

    where = (source if path else "config") + (" + overrides" if overrides else "")
    validate(obj, where)
    for line in advice(obj):
        logging.getLogger("rlreason.config").warning("%s: %s", where, line)
    return obj


def flat_dict(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{'algo': {'loss': 'pg'}, 'train.steps': 3} -> {'algo.loss': 'pg', 'train.steps': 3}; lists stay values."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_dict(v, key + "."))
        else:
            out[key] = v
    return out


def to_yaml(cfg) -> str:
    """The resolved config as YAML (what `rlreason config` prints and the run directory keeps)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg) -> Dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(cfg))


def field_docs(schema: type, prefix: str = "") -> List[tuple]:
    """(key, default, doc) for every leaf field, read from the attribute docstrings in this file."""
    import ast
    import inspect

    out = []
    src = ast.parse(inspect.getsource(schema))
    body = src.body[0].body
    docs = {}
    for a, b in zip(body, body[1:]):
        if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            docs[a.target.id] = str(b.value.value)
    inst = schema()
    for f in fields(schema):
        val = getattr(inst, f.name)
        if is_dataclass(val):
            out += field_docs(type(val), prefix + f.name + ".")
        else:
            out.append((prefix + f.name, val, docs.get(f.name, "")))
    return out
