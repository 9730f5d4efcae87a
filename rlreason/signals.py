"""Stopping a run at a safe point: SIGINT (Ctrl-C) and SIGTERM (what schedulers send) are handled alike.

Inside `StopRequest()`, the first signal only sets `signum`: the loop finishes its current step, saves a
checkpoint (`run.save_on_signal`), says which checkpoint to resume from and exits with 128 + the signal
number (130 for SIGINT, 143 for SIGTERM). A second signal stops at once (KeyboardInterrupt), without saving.
Outside the main thread (e.g. a run started from a worker thread) nothing is installed.
"""
from __future__ import annotations

import signal
import sys
import threading

NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class StopRequest:
    def __init__(self) -> None:
        self.signum = 0  # the first signal received, 0 while none
        self._old: dict = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in NAMES}
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.signum:
            raise KeyboardInterrupt  # the second one: stop now
        self.signum = signum
        print(f"\nrlreason: {NAMES.get(signum, signum)} received: stopping after this step "
              f"(send it again to stop at once)", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        self._old = {}
