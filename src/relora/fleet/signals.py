"""SIGTERM and SIGINT during a rollout: raised as Interrupted in the main thread, once, so the job in flight
is abandoned atomically (given back to pending, nothing published) and the process ends cleanly."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from relora.errors import Interrupted

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
    """The first stop signal raises Interrupted where the main thread is; later ones are ignored, so the
    clean-up that the first one started is not itself interrupted."""
    fired: list[int] = []

    def raise_once(signum: int) -> None:
        if not fired:
            fired.append(signum)
            raise Interrupted(signum)

    with on_stop_signals(raise_once):
        yield
