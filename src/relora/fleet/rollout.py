"""`relora rollout FLEET.yaml`: take a whole fleet of adapters from Theta to Theta'.

The output root is checked, the ledger gets a row per adapter, and the
configured executor runs the jobs (relora.fleet.worker) until every row is final.
"""

from __future__ import annotations

import os
from pathlib import Path

from relora.errors import InputError
from relora.fleet.config import FleetConfig
from relora.fleet.ledger import Ledger


def check_output_root(fleet: FleetConfig) -> None:
    root = Path(fleet.out)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise InputError(root, f"output root is not writable ({exc.strerror})", "choose a writable out:") from exc
    for entry in fleet.adapters:
        if Path(entry.path).resolve() in (root.resolve(), *root.resolve().parents):
            raise InputError(root, f"is inside adapter {entry.name}'s directory", "choose an out: outside inputs")


def rollout(fleet: FleetConfig, retry_failed: bool = False, progress: bool = True) -> dict[str, int]:
    """Run the fleet on the configured executor; returns the ledger's state counts."""
    check_output_root(fleet)
    ledger = Ledger(fleet.ledger_url)
    ledger.register([e.name for e in fleet.adapters], {e.name: fleet.method_of(e) for e in fleet.adapters},
                    {e.name: fleet.threshold_of(e) for e in fleet.adapters})
    if fleet.executor == "ray":
        from relora.fleet.executors.ray import run_on_ray

        run_on_ray(fleet, ledger, retry_failed, progress)
    else:
        from relora.fleet.executors.local import run_local

        run_local(fleet, ledger, retry_failed, progress)
    return ledger.counts()
