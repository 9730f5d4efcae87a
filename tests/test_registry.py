"""rlreason.registry: duplicate names raise, unknown names list the known ones, one-line docs."""
from __future__ import annotations

import pytest

from rlreason.registry import Registry, UnknownName


def test_registry_duplicate_registration_raises():
    reg = Registry("widget")

    @reg.register("a")
    def a():
        """Alpha entry.

        More text."""

    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a")(lambda: None)
    assert reg.get("a") is a  # the first registration is kept
    assert reg.names() == ["a"] and "a" in reg and list(reg) == ["a"]
    assert reg.doc("a") == "Alpha entry."


def test_registry_unknown_name_lists_known():
    reg = Registry("widget")
    reg.register("zeta")(1)
    reg.register("alpha")(2)
    with pytest.raises(UnknownName) as info:
        reg.get("beta")
    msg = str(info.value)
    assert msg == "unknown widget 'beta'; known: alpha, zeta"  # sorted, readable (not a KeyError repr)
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownName, match=r"known: \(none\)"):
        Registry("empty").get("x")


def test_doc_is_the_whole_first_paragraph():
    reg = Registry("widget")

    @reg.register("wrapped")
    def wrapped():
        """A description that goes on past the first line
        of the docstring, ending here.

        Details."""

    assert reg.doc("wrapped") == "A description that goes on past the first line of the docstring, ending here."


def test_rlreason_list_shows_whole_sentences(capsys):
    """Every entry of `rlreason list` (continuation lines joined) ends a sentence; no line is over 110 columns."""
    from rlreason.cli import main

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    entries = []
    for line in lines:
        if line.startswith(" " * 25):
            entries[-1] += " " + line.strip()
        elif line.startswith("  "):
            entries.append(line.strip())
    assert len(entries) > 30 and max(map(len, lines)) <= 110
    assert [e for e in entries if not e.endswith(".")] == []
    gae = next(e for e in entries if e.startswith("gae "))
    assert gae.endswith("(masked mean and std with ddof `cfg.std_ddof`, + adv_eps).")
