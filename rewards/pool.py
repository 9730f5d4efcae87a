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


READY = "ready"  # the first line a worker writes, once it has imported what it needs
START_S = 120.0  # a worker that is not ready within this long (or dies first) failed to start
_BAD = object()  # a reply line that is not JSON


class _Worker:
    def __init__(self, script: str):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-I", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, start_new_session=True, bufsize=0,
        )
        self.buffer = b""
        self.ready = False  # its READY line has arrived: item clocks start only then
        self.item: Optional[int] = None  # index of the item being worked on
        self.deadline = time.monotonic() + START_S

    @property
    def waited_on(self) -> bool:
        return self.item is not None or not self.ready

    def send(self, index: int, payload: Any, timeout_s: float) -> None:
        self.item, self.deadline = index, time.monotonic() + timeout_s
        self.proc.stdin.write((json.dumps(payload) + "\n").encode())

    def read_line(self) -> Any:
        """The next reply (parsed; _BAD if not JSON), None if no full line has arrived yet, EOFError at EOF."""
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            raise EOFError
        self.buffer += chunk
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return _BAD

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class WorkerPool:
    """`workers` processes running `script`; `map(items)` -> [(status, value)] in order, where
    status is "ok" (value: the worker's answer), "timeout" or "crash" (the worker died or replied
    with a line that is not JSON). A worker first writes the JSON line "ready" once started; an
    item's `timeout_s` runs from when it is sent, so start-up time never counts against it."""

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
        self._sel = selectors.DefaultSelector()
        for w in self._workers:
            if not w.ready:
                self._sel.register(w.proc.stdout, selectors.EVENT_READ, w)
        failed_starts = 0
        try:
            while (todo or any(w.item is not None for w in self._workers)) and failed_starts <= 2 * self.n:
                self._hand_out(items, todo)
                wait = max(0.0, min(w.deadline for w in self._workers if w.waited_on) - time.monotonic())
                for key, _ in self._sel.select(timeout=wait):
                    failed_starts += self._receive(key.data, results)
                now = time.monotonic()
                for w in [w for w in self._workers if w.waited_on and now >= w.deadline]:
                    if w.item is None:
                        failed_starts += 1
                    else:
                        results[w.item] = ("timeout", None)
                    self._replace(w)
        finally:
            for w in [w for w in self._workers if w.item is not None]:  # only after too many failed starts
                self._replace(w)
            self._sel.close()
        return [r if r is not None else ("crash", None) for r in results]

    def _hand_out(self, items: List[Any], todo: List[int]) -> None:
        for w in list(self._workers):
            if todo and w.ready and w.item is None:
                i = todo.pop()
                try:
                    w.send(i, items[i], self.timeout_s)
                except OSError:  # died while idle: replace it and retry the item
                    w.item = None
                    todo.append(i)
                    self._replace(w)
                    continue
                self._sel.register(w.proc.stdout, selectors.EVENT_READ, w)

    def _receive(self, w: _Worker, results: List[Optional[Tuple[str, Any]]]) -> int:
        """Read what worker `w` wrote; 1 if that was a failed start, else 0."""
        try:
            reply = w.read_line()
        except EOFError:  # the worker died (e.g. out of memory)
            reply = _BAD
        if reply is None:
            return 0
        if not w.ready:
            if reply != READY:
                self._replace(w)
                return 1
            w.ready = True
        else:
            results[w.item] = ("crash", None) if reply is _BAD else ("ok", reply)
            w.item = None
            if reply is _BAD:  # dead, or out of step with its replies
                self._replace(w)
                return 0
        self._sel.unregister(w.proc.stdout)
        return 0

    def _replace(self, w: _Worker) -> _Worker:
        try:
            self._sel.unregister(w.proc.stdout)
        except KeyError:  # idle: not being waited on
            pass
        w.kill()
        self.restarts += 1
        fresh = _Worker(self.script)
        self._workers[self._workers.index(w)] = fresh
        self._sel.register(fresh.proc.stdout, selectors.EVENT_READ, fresh)
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
