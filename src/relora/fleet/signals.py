"""SIGTERM and SIGINT during a rollout: raised as Interrupted in the main thread, once, so the job in flight
is abandoned atomically (given back to pending, nothing published) and the process ends cleanly. The signal is
also recorded (relora.errors.request_stop), so a raise that lands in a __del__ and is swallowed there is raised
again at the next safe point (a claim or a training step)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from relora.errors import Interrupted, clear_stop, request_stop, stop_requested

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def on_stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Call handler(signum) on SIGTERM or SIGINT inside the block; the previous handlers come back after."""
    def handle(signum: int, _frame: FrameType | None) -> None:
        handler(signum)

    before = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)


@contextmanager
def interruptible() -> Iterator[None]:
    """The first stop signal raises Interrupted where the main thread is, and stays recorded for the safe points
    (relora.errors.raise_if_stopped); later ones are ignored, so the clean-up that the first one started is not
    itself interrupted."""
    def raise_once(signum: int) -> None:
        if not stop_requested():
            request_stop(signum)
            raise Interrupted(signum)

    clear_stop()
    try:
        with on_stop_signals(raise_once):
            yield
    finally:
        clear_stop()
