"""Stopping long loops cleanly on SIGINT or SIGTERM (evaluate, translate, align).

Inside :func:`signals_caught` the first SIGINT or SIGTERM only records itself; the loops that process
batches ask :func:`requested` after each batch and stop there, so the caller can keep what is complete
and say it is partial. A second signal acts at once (the handler that was there before).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_pending: list[int] = []  # the signal received inside the innermost signals_caught block, if any
_depth = [0]


class Stopped(KeyboardInterrupt):
    """Work stopped by a signal after what was complete had been kept; ``signum`` says which signal,
    the message what was kept."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def requested() -> int | None:
    """The number of the signal that asked the work to stop, or None."""
    return _pending[0] if _pending else None


def name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    return signal.Signals(signum).name


@contextmanager
def signals_caught() -> Iterator[None]:
    """Record SIGINT and SIGTERM instead of dying (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        if not _pending:
            _pending.append(signum)
        signal.signal(signum, previous[signum])

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        for signum, old in previous.items():
            signal.signal(signum, old)
        if not _depth[0]:
            _pending.clear()
