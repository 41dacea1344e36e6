"""SIGTERM handled like Ctrl-C, for commands that own child processes (`billing demo`).

Python turns SIGINT into KeyboardInterrupt, so `finally` blocks (stopping every child)
run; SIGTERM's default kills the process at once and leaves the children running. Inside
:func:`sigterm_as_interrupt` both signals raise KeyboardInterrupt, so one cleanup path
serves both.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM and SIGINT raise KeyboardInterrupt; the previous handlers
    are restored on exit (after the caller's cleanup, which should be inside the block)."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_for_stop() -> None:
    """Sleep until SIGINT or SIGTERM (KeyboardInterrupt), then ignore further stop signals
    so the cleanup that follows is not interrupted halfway (sigterm_as_interrupt restores
    the handlers when its block ends)."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
