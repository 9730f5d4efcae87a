"""A small pool of worker processes with a hard per-item wall-clock timeout.

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot stop a worker that
hangs (a future's timeout only stops the wait), and math-verify's own timeout
uses `signal.alarm`, which raises outside the main thread. Here each worker is
a plain subprocess (`python -I <script>`: -I keeps the script's folder off sys.path,
where `rewards/math.py` would shadow the stdlib `math`) speaking one JSON line in, one JSON
line out; a worker that misses its deadline is killed and replaced, and its
item is reported as a timeout.

>>> import os
>>> script = os.path.join(os.path.dirname(__file__), "_math_worker.py")
>>> with WorkerPool(script, workers=1, timeout_s=30) as pool:
...     pool.map([["1/2", "0.5"], ["2", "3"]])
[('ok', True), ('ok', False)]
"""
from __future__ import annotations

import atexit
import json
import os
import selectors
import subprocess
import sys
import threading
import time
import weakref
from typing import Any, List, Optional, Tuple

_LIVE: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


class _Worker:
    def __init__(self, script: str):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, start_new_session=True, bufsize=0,
        )
        self.buffer = b""
        self.item: Optional[int] = None  # index of the item being worked on
        self.deadline = 0.0

    def send(self, index: int, payload: Any, timeout_s: float) -> None:
        self.item, self.deadline = index, time.monotonic() + timeout_s
        self.proc.stdin.write((json.dumps(payload) + "\n").encode())

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class WorkerPool:
    """`workers` processes running `script`; `map(items)` -> [(status, value)] in order, where
    status is "ok" (value: the worker's answer), "timeout" or "crash" (the worker died)."""

    def __init__(self, script: str, workers: int, timeout_s: float):
        if workers < 1 or timeout_s <= 0:
            raise ValueError("WorkerPool needs workers >= 1 and timeout_s > 0")
        self.script, self.n, self.timeout_s = script, workers, timeout_s
        self._workers: List[_Worker] = []
        self._lock = threading.Lock()
        self.restarts = 0
        _LIVE.add(self)

    def map(self, items: List[Any]) -> List[Tuple[str, Any]]:
        with self._lock:
            return self._map(items)

    def _map(self, items: List[Any]) -> List[Tuple[str, Any]]:
        results: List[Optional[Tuple[str, Any]]] = [None] * len(items)
        todo = list(range(len(items)))[::-1]  # pop() from the end = in order
        while len(self._workers) < min(self.n, len(items)):  # lazy start, all at once
            self._workers.append(_Worker(self.script))
        sel = selectors.DefaultSelector()
        busy = 0
        idle = list(self._workers)
        try:
            while todo or busy:
                while todo and idle:
                    w = idle.pop()
                    i = todo.pop()
                    try:
                        w.send(i, items[i], self.timeout_s)
                    except BrokenPipeError:  # died while idle: replace it and retry the item
                        todo.append(i)
                        idle.append(self._replace(w))
                        continue
                    sel.register(w.proc.stdout, selectors.EVENT_READ, w)
                    busy += 1
                wait = max(0.0, min(w.deadline for w in self._workers if w.item is not None) - time.monotonic())
                for key, _ in sel.select(timeout=wait):
                    w = key.data
                    chunk = os.read(w.proc.stdout.fileno(), 65536)
                    if not chunk:  # EOF: the worker crashed (e.g. out of memory)
                        results[w.item] = ("crash", None)
                    else:
                        w.buffer += chunk
                        if b"\n" not in w.buffer:
                            continue
                        line, w.buffer = w.buffer.split(b"\n", 1)
                        results[w.item] = ("ok", json.loads(line))
                    sel.unregister(w.proc.stdout)
                    busy -= 1
                    w.item = None
                    idle.append(w if chunk else self._replace(w))
                now = time.monotonic()
                for w in list(self._workers):
                    if w.item is not None and now >= w.deadline:
                        results[w.item] = ("timeout", None)
                        sel.unregister(w.proc.stdout)
                        busy -= 1
                        idle.append(self._replace(w))
        finally:
            sel.close()
        return [r if r is not None else ("crash", None) for r in results]

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        self.restarts += 1
        fresh = _Worker(self.script)
        self._workers[self._workers.index(w)] = fresh
        return fresh

    def close(self) -> None:
        """Stop every worker (EOF first, then kill); the pool restarts them lazily if used again."""
        for w in self._workers:
            try:
                w.proc.stdin.close()
                w.proc.wait(timeout=1)
            except Exception:  # noqa: BLE001 - already dead or stuck: kill below
                pass
            if w.proc.poll() is None:
                w.kill()
        self._workers = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    for pool in list(_LIVE):
        pool.close()
