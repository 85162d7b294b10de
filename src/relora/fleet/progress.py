"""A live progress bar of a rollout, read from the ledger (so it counts every worker's jobs)."""

from __future__ import annotations

import threading

from tqdm.auto import tqdm

from relora.errors import RolloutStopped
from relora.fleet.ledger import FINAL, Ledger


class LiveBar:
    """A tqdm bar of finished adapters, refreshed from the ledger by a background thread."""

    def __init__(self, ledger: Ledger, total: int, enabled: bool) -> None:
        self.ledger, self.stop = ledger, threading.Event()
        self.bar = tqdm(total=total, desc="rollout", unit="adapter", disable=not enabled)
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while True:
            try:
                counts = self.ledger.counts()
            except RolloutStopped:  # the ledger cannot be read: the job that hits it stops the rollout, in one line
                return

            self.bar.n = sum(counts[s] for s in FINAL)
            self.bar.set_postfix({k: v for k, v in counts.items() if v}, refresh=True)
            if self.stop.wait(2.0):
                return

    def __enter__(self) -> LiveBar:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        if exc and exc[0] is not None:  # stopping already: the ledger may be what stops it
            self.bar.close()
            return
        counts = self.ledger.counts()
        self.bar.n = sum(counts[s] for s in FINAL)
        self.bar.set_postfix({k: v for k, v in counts.items() if v})
        self.bar.close()
