"""The local executor: the rollout's own process, or N spawned worker processes on one machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from relora.errors import RolloutStopped
from relora.fleet.config import FleetConfig
from relora.fleet.ledger import Ledger
from relora.fleet.progress import LiveBar
from relora.fleet.worker import work_loop


def run_local(fleet: FleetConfig, ledger: Ledger, retry_failed: bool, progress: bool) -> None:
    """workers: 1 runs in this process; more (or pinned GPUs) start that many worker processes."""
    if fleet.workers == 1 and not fleet.gpus:
        with LiveBar(ledger, len(fleet.adapters), progress):
            work_loop(fleet, retry_failed=retry_failed)
    else:
        run_processes(fleet, ledger, retry_failed, progress)


@contextmanager
def pinned_gpu(gpu: int | None) -> Iterator[None]:
    """A spawned worker inherits the environment at start: CUDA_VISIBLE_DEVICES=gpu shows it one GPU,
    which it then sees as cuda:0."""
    if gpu is None:
        yield
        return
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    try:
        yield
    finally:
        if before is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def _local_worker(fleet_json: str, retry_failed: bool) -> None:
    work_loop(FleetConfig.model_validate_json(fleet_json), retry_failed=retry_failed)


def run_processes(fleet: FleetConfig, ledger: Ledger, retry_failed: bool, progress: bool) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    procs = [ctx.Process(target=_local_worker, args=(fleet.model_dump_json(), retry_failed))
             for _ in range(fleet.workers)]
    for i, p in enumerate(procs):
        with pinned_gpu(fleet.gpus[i] if fleet.gpus else None):
            p.start()
    with LiveBar(ledger, len(fleet.adapters), progress):
        for p in procs:
            p.join()
    if any(p.exitcode != 0 for p in procs):
        raise RolloutStopped(f"{fleet.out}: a worker stopped (exit codes {[p.exitcode for p in procs]}); "
                             "fix: see the ledger errors (relora status), then re-run to resume")
