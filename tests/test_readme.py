"""The README quotes only what exists: every `rlreason ...` command it shows parses (its subcommand and
--options exist) and every config key it names (`algo.kl.coef`, `key=value` overrides) resolves in the config
schema. A renamed key or option fails here instead of in a reader's terminal."""
from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path

import pytest

from rlreason.cli import build_parser
from rlreason.config import Config
from rlreason.sft_config import SFTConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SECTIONS = {f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.type) or f.name != "rewards"}
COMMAND = re.compile(r"(?:^|`|\$ )(rlreason [^`\n]*)", re.M)
KEY = re.compile(r"`((?:run|model|data|rollout|algo|train|eval|log)\.[a-z_][a-z0-9_.]*)(?=[`:= \[])")


def _resolve(cls, dotted: str) -> bool:
    """Whether `dotted` names a field of the dataclass `cls` (a key under a dict/list/Any field is not checked)."""
    head, _, rest = dotted.partition(".")
    hints = typing.get_type_hints(cls)
    if head not in hints:
        return False
    sub = hints[head]
    if not rest:
        return True
    return _resolve(sub, rest) if dataclasses.is_dataclass(sub) else True


def _subparsers(parser: argparse.ArgumentParser):
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return action.choices if action else {}


def _commands():
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for m in COMMAND.finditer(text):
            shows_error = text[m.end():].lstrip("\n").startswith("rlreason: error")  # a deliberate mistake
            if not shows_error:
                found.append((doc.name, m.group(1).strip()))
    return found


def test_the_docs_quote_commands_at_all():
    assert len(_commands()) > 20


@pytest.mark.parametrize("where, line", _commands())
def test_every_quoted_command_exists(where, line):
    tokens = line.split()[1:]
    parser = build_parser()
    names = []
    while tokens and _subparsers(parser) and tokens[0] in _subparsers(parser):
        names.append(tokens[0])
        parser = _subparsers(parser)[tokens.pop(0)]
    assert names, f"{where}: `{line}`: no such rlreason command"
    options = {s for a in parser._actions for s in a.option_strings}
    for token in tokens:
        flag = token.strip("[]").split("=")[0]
        if flag.startswith("-") and flag not in ("-", "--"):
            assert flag in options, f"{where}: `{line}`: {flag} is not an option of rlreason {' '.join(names)}"
        elif re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+=\S*", token.strip("[]")) and names[0] in ("train", "eval", "plan",
                                                                                            "config", "sft", "sweep"):
            key = token.strip("[]").split("=")[0]
            schema = SFTConfig if names[0] == "sft" else Config
            assert _resolve(schema, key), f"{where}: `{line}`: {key} is not a config key"


FILES = (".safetensors", ".log", ".json", ".jsonl", ".yaml", ".md", ".png", ".csv", ".txt", ".pt", ".py")


def _keys():
    return sorted({(doc.name, m.group(1).rstrip(".")) for doc in DOCS for m in KEY.finditer(doc.read_text())
                   if not m.group(1).endswith(FILES)})  # train.log, model.safetensors are files


@pytest.mark.parametrize("where, key", _keys())
def test_every_quoted_config_key_resolves(where, key):
    assert _resolve(Config, key) or _resolve(SFTConfig, key), f"{where}: `{key}` is not a config key"


def test_the_checker_catches_a_wrong_key_and_option():
    assert not _resolve(Config, "algo.kl.coeff") and _resolve(Config, "algo.kl.coef")
    assert _resolve(Config, "data.params.anything")  # under a dict: not checked
    with pytest.raises(AssertionError, match="--dryrun is not an option"):
        test_every_quoted_command_exists("x", "rlreason sweep s.yaml --dryrun")
    with pytest.raises(AssertionError, match="no such rlreason command"):
        test_every_quoted_command_exists("x", "rlreason trian")
