"""Preemption-safe signal handling for long runs: finish the step, save, exit cleanly."""

from __future__ import annotations

import contextlib
import signal
from typing import Callable


class StopOnSignal:
    """SIGTERM/SIGINT set a flag; the loop finishes its current call, saves, and exits 0.

    A second Ctrl-C raises KeyboardInterrupt at once, except inside `critical()` (starting a
    checkpoint save, appending a metrics line), where it waits for the section to end: an
    interrupt in the middle of orbax's save call leaves its background threads broken.
    """

    def __init__(self, on_error: Callable[[], None] | None = None):
        self.signal: int | None = None
        self.on_error = on_error
        self._old = {}
        self._critical = 0
        self._deferred = False

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: no signal handling
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            if self._critical:
                self._deferred = True
                return
            raise KeyboardInterrupt  # a second Ctrl-C means now
        self.signal = signum

    @contextlib.contextmanager
    def critical(self):
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
            if not self._critical and self._deferred:
                self._deferred = False
                raise KeyboardInterrupt

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None and self.on_error is not None:
                self.on_error()
        finally:
            for s, h in self._old.items():
                signal.signal(s, h)
