"""Plain data between the sandbox's judge and its candidate process (stdlib only; both sides import it).

A message is one frame: a 4-byte big-endian length, then that many bytes of UTF-8 JSON. A value (a call's
arguments, a return value) crosses as tagged JSON that `decode` turns back into exactly these types:
None, bool, int, float (nan, inf and -0.0 included), complex, str, bytes, list, tuple, dict, set and
frozenset, nested at most MAX_DEPTH deep. Anything else (a subclass, an object with its own `__eq__`, a
generator) cannot be encoded, so a program's return value reaches the judge only as data it could have
returned honestly.

>>> decode(json.loads(json.dumps(encode([1, (2.5, float("inf")), {"a": {b"x"}}, None, True]))))
[1, (2.5, inf), {'a': {b'x'}}, None, True]
"""
import json
import os
import select
import struct
import time

MAX_FRAME = 32 << 20  # bytes in one message: a 4 MiB stdout escaped as JSON fits, a flood does not
MAX_DEPTH = 200
_SEQUENCES = {list: "l", tuple: "t", set: "S", frozenset: "F"}
_BUILD = {"l": list, "t": tuple, "S": set, "F": frozenset}


class WireError(Exception):
    """A frame or value that the other side's honest code never sends (or the other side is gone)."""


class Deadline(Exception):
    """The job's wall-clock deadline passed while waiting for the other side."""


def encode(value, depth=0):
    """`value` as tagged JSON-able data; TypeError for anything that is not plain data."""
    if depth > MAX_DEPTH:
        raise TypeError("nested too deep")
    kind = type(value)
    if value is None:
        return ["N"]
    if kind is bool:
        return ["B", value]
    if kind is int:
        return ["i", hex(value)]  # hex: no int_max_str_digits limit either way
    if kind is float:
        return ["f", value.hex()]
    if kind is complex:
        return ["c", value.real.hex(), value.imag.hex()]
    if kind is str:
        return ["s", value]
    if kind is bytes:
        return ["y", value.hex()]
    if kind in _SEQUENCES:
        return [_SEQUENCES[kind], [encode(v, depth + 1) for v in value]]
    if kind is dict:
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
    raise TypeError(f"a {kind.__name__} is not plain data")


def _decode(item, depth):
    if depth > MAX_DEPTH or type(item) is not list or not item or type(item[0]) is not str:
        raise WireError("malformed value")
    tag, args = item[0], item[1:]
    if tag == "N" and not args:
        return None
    if len(args) == 1 and (tag, type(args[0])) in (("B", bool), ("s", str)):
        return args[0]
    if len(args) == 1 and type(args[0]) is str and tag in ("i", "f", "y"):
        return {"i": lambda s: int(s, 16), "f": float.fromhex, "y": bytes.fromhex}[tag](args[0])
    if tag == "c" and len(args) == 2 and all(type(a) is str for a in args):
        return complex(float.fromhex(args[0]), float.fromhex(args[1]))
    if tag in _BUILD and len(args) == 1 and type(args[0]) is list:
        return _BUILD[tag](_decode(v, depth + 1) for v in args[0])
    if tag == "d" and len(args) == 1 and type(args[0]) is list:
        if not all(type(kv) is list and len(kv) == 2 for kv in args[0]):
            raise WireError("malformed dict")
        return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in args[0]}
    raise WireError(f"malformed value with tag {tag[:10]!r}")


def decode(item):
    """The plain value that `encode` gave `item` for; WireError for anything else."""
    try:
        return _decode(item, 0)
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as e:  # e.g. an unhashable key
        raise WireError(f"malformed value: {type(e).__name__}") from None


def send(fd, message):
    data = json.dumps(message).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd, n, deadline):
    chunks, got = [], 0
    while got < n:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise Deadline()
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise WireError("the other side closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(fd, deadline=None):
    """One message (a JSON object) from `fd` by `deadline` (time.monotonic(); None: wait)."""
    (n,) = struct.unpack(">I", _read_exactly(fd, 4, deadline))
    if n > MAX_FRAME:
        raise WireError(f"a frame of {n} bytes (at most {MAX_FRAME})")
    try:
        message = json.loads(_read_exactly(fd, n, deadline).decode())
    except (ValueError, RecursionError, MemoryError) as e:
        raise WireError(f"malformed frame: {type(e).__name__}") from None
    if type(message) is not dict:
        raise WireError("a frame that is not an object")
    return message
