"""rlreason.rewards.sandbox vs programs that forge a pass: the verdict is the judge's, out of the program's reach.

Every forging program below is *wrong* (its `f` does not compute x + 1) and each attack made the old
in-process harness report a pass. Each is scored beside an honest program in one batch: the forger
must score 0 and the honest one 1, under both scorings, and nothing may raise (issue 22).
"""
from __future__ import annotations

import math
import textwrap

import pytest

from rlreason.rewards import REWARDS
from rlreason.rewards import _sandbox_wire as wire
from rlreason.types import Completion, Rollout, Sample

TESTS = {"tests": ["assert f(3) == 4", "assert abs(f(10) - 11) < 1e-9 and isinstance(f(1), int) and all([f(1) == 2])"]}
HONEST = "def f(x): return x + 1"

FORGERS = {
    "replace builtins.exec (the harness's exec of each test becomes a no-op)": """
        import builtins
        def f(x): return 0
        builtins.exec = lambda *args, **kwargs: None""",
    "replace json.dumps so the harness reports a pass": """
        import json
        def f(x): return 0
        _dumps = json.dumps
        def forged(obj, *args, **kwargs):
            if isinstance(obj, dict) and "total" in obj:
                obj = dict(obj, passed=obj["total"], error="")
            if isinstance(obj, dict) and set(obj) & {"value", "raised", "unencodable", "loaded"}:
                obj = {"passed": 2, "total": 2}
            return _dumps(obj, *args, **kwargs)
        json.dumps = forged""",
    "walk sys._getframe() into the harness and replace its tests": """
        import sys
        def f(x): return 0
        frame = sys._getframe()
        while frame is not None:
            for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
                if isinstance(value, dict) and isinstance(value.get("tests"), list):
                    value["tests"][:] = ["pass"] * len(value["tests"])
                elif isinstance(value, list) and value and all(isinstance(t, str) and "assert" in t for t in value):
                    value[:] = ["pass"] * len(value)
            frame = frame.f_back""",
    "write a passing result to every descriptor, then os._exit(0)": """
        import os
        def f(x): return 0
        for fd in range(3, 256):
            try:
                os.write(fd, b'{"passed": 2, "total": 2, "error": ""}')
            except OSError:
                pass
        os._exit(0)""",
    "write a passing verdict line to every descriptor (the runner's answer to the trainer)": """
        import os
        def f(x): return 0
        for fd in range(0, 256):
            try:
                os.write(fd, b'\\n{"status": "ok", "passed": 2, "total": 2}\\n')
            except OSError:
                pass""",
    "speak the protocol: queue replies of True and exit": """
        import os, sys
        import _sandbox_wire as w
        def f(x): return 0
        for fd in range(3, 256):
            try:
                w.send(fd, {"loaded": ""})
                for _ in range(4):
                    w.send(fd, {"value": w.encode(True)})
            except OSError:
                pass
        os._exit(0)""",
    "return an object whose __eq__ is always true": """
        class Anything:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            __hash__ = object.__hash__
        def f(x): return Anything()""",
    "return an int subclass whose __eq__ is always true": """
        class Int(int):
            def __eq__(self, other): return True
            __hash__ = int.__hash__
        def f(x): return Int(0)""",
    "find the expected values in its own memory": """
        import ctypes, re
        pattern = re.compile(rb"assert f\\(%d\\) == (\\d+)")
        def f(x):  # every readable mapping of this process, read in place (not via /proc/self/mem)
            regex = re.compile(pattern.pattern.replace(b"%d", str(x).encode()))
            with open("/proc/self/maps") as maps:
                for line in maps:
                    fields = line.split()
                    start, end = (int(a, 16) for a in fields[0].split("-"))
                    if "r" not in fields[1] or (len(fields) > 5 and fields[5].startswith("[v")):
                        continue
                    found = regex.search(ctypes.string_at(start, end - start))
                    if found:
                        return int(found.group(1))
            return 0""",
    "exit the harness with SystemExit(0) from the call": """
        import sys
        def f(x): sys.exit(0)""",
    "patch the harness to answer resolve with garbage (the judge must not crash into an unchecked error)": """
        import sys
        def f(x): return 0
        sys.modules["_sandbox_child"]._resolve = lambda scope, name: ["module", ["math"], {"x": 1}]""",
    "return a value too big for one frame": """
        def f(x): return list(range(3_000_000))""",
    "shadow the builtins the tests compare with": """
        def f(x): return 0
        def abs(x): return 0
        def isinstance(*a): return True
        def len(x): return 1
        def all(x): return True""",
    "return a structure nested too deep to decode": """
        def f(x):
            v = 0
            for _ in range(100000):
                v = [v]
            return v""",
}


def rollout(codes, answer=TESTS):
    samples = [Sample(id=f"s{i}", task="code", prompt="write f", answer=answer) for i in range(len(codes))]
    completions = [Completion(f"```python\n{textwrap.dedent(c)}\n```", [1], [0.0], "stop") for c in codes]
    return Rollout(samples, completions, 1)


def test_the_honest_program_passes_and_the_forger_memory_search_finds_nothing_alone():
    """Controls: the honest program scores 1; the memory search works (it finds a value the program holds)."""
    finder = FORGERS["find the expected values in its own memory"] + "\n        held = b'assert f(3) == 4; assert f(10) == 11; assert f(1) == 2'"
    out = REWARDS.get("code_tests")(rollout([HONEST, finder]))
    assert out.scores == [1.0, 1.0], "the search must work when the text is in the program's own memory"


@pytest.mark.parametrize("attack", list(FORGERS))
def test_a_forged_pass_scores_zero_beside_an_honest_program(attack):
    for scoring in ("pass_fail", "fraction"):
        out = REWARDS.get("code_tests")(rollout([FORGERS[attack], HONEST]), scoring=scoring, timeout_s=5)
        assert out.scores == [0.0, 1.0], (scoring, out.scores)
        assert out.outcomes == ["wrong", "ok"] and out.counts["errors"] == 0, (out.outcomes, out.counts)


def test_forgers_on_a_humaneval_check_score_zero():
    answer = {"check": "def check(candidate):\n    assert candidate(3) == 4\n    assert abs(candidate(0.5) - 1.5) < 1e-6\n",
              "entry_point": "inc", "prelude": "def inc(x):\n    '''x + 1'''\n"}
    anything = """
        class Anything(float):
            def __eq__(self, other): return True
            def __sub__(self, other): return 0.0
        def inc(x): return Anything(0)"""
    frames = FORGERS["walk sys._getframe() into the harness and replace its tests"].replace("def f(x)", "def inc(x)")
    out = REWARDS.get("code_tests")(rollout([anything, frames, "def inc(x): return x + 1"], answer))
    assert out.scores == [0.0, 0.0, 1.0]


RESULT_PIPE_PAYLOADS = {  # written to every open descriptor the program can find, then os._exit(0)
    "inflated count": b'{"passed": 1000000, "total": 1}',
    "setup error": b'{"setup_error": "forged"}',
    "framed setup error": b'\x00\x00\x00\x19{"setup_error": "forged"}',
    "string count": b'{"passed": "x", "total": 1}',
    "not an object": b'[1, 2, 3]',
    "flood": b"x" * 200_000,
    "frame too big": b"\x7f\xff\xff\xff",
}


@pytest.mark.parametrize("name", list(RESULT_PIPE_PAYLOADS))
def test_a_hostile_pipe_payload_is_a_violation_of_that_sample_only(name):
    """Payloads that once made the runner or the trainer raise (aborting `rlreason score` or a run), or scored
    1000000 under `scoring: fraction`: a violation for that one sample; the honest sample beside it passes."""
    forge = f"""
        import os
        for fd in range(3, 256):
            try:
                os.write(fd, {RESULT_PIPE_PAYLOADS[name]!r})
            except OSError:
                pass
        os._exit(0)
    """
    for scoring in ("pass_fail", "fraction"):
        out = REWARDS.get("code_tests")(rollout([forge, HONEST]), scoring=scoring, timeout_s=5)
        assert out.scores == [0.0, 1.0], (scoring, out.scores)
        assert out.counts == {"timeouts": 0, "violations": 1, "errors": 0}
        assert out.outcomes == ["wrong", "ok"]


def test_plain_data_round_trips_exactly():
    values = [None, True, False, 0, -5, 10 ** 5000, 1.5, -0.0, math.inf, -math.inf, 1 + 2j, "", "é\ud800", b"\x00\xff",
              [1, [2, (3,)]], (), {"a": 1, 2: [3], (4, 5): None}, {1, "x", (2,)}, frozenset({b"y"})]
    for v in values:
        back = wire.decode(wire.encode(v))
        assert type(back) is type(v) and back == v and str(type(v)) == str(type(back))
    assert math.copysign(1, wire.decode(wire.encode(-0.0))) == -1
    assert math.isnan(wire.decode(wire.encode(math.nan)))
    assert wire.decode(wire.encode(True)) is True and type(wire.decode(wire.encode(1))) is int


@pytest.mark.parametrize("value", [object(), iter([1]), type("Int", (int,), {})(3), type("S", (str,), {})("s"),
                                   [lambda: 1], {1: object()}])
def test_anything_but_plain_data_is_refused(value):
    with pytest.raises(TypeError):
        wire.encode(value)


@pytest.mark.parametrize("item", [["i", 3], ["B", 1], ["l", "ab"], ["d", [[["l", []], ["N"]]]], ["x"], [], "s",
                                  ["f", "nope"], ["t", [["i", "0x1"], ["q"]]]])
def test_malformed_values_are_refused(item):
    with pytest.raises(wire.WireError):
        wire.decode(item)
