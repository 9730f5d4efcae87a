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
