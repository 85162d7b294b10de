"""The local executor: the rollout's own process, or N spawned worker processes on one machine."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from relora.errors import Interrupted, RolloutStopped
from relora.fleet.config import FleetConfig
from relora.fleet.ledger import Ledger
from relora.fleet.progress import LiveBar
from relora.fleet.signals import on_stop_signals
from relora.fleet.worker import work_loop


def run_local(fleet: FleetConfig, ledger: Ledger, retry_failed: bool, progress: bool) -> None:
    """workers: 1 runs in this process; more (or pinned GPUs) start that many worker processes."""
    began = time.time()
    try:
        if fleet.workers == 1 and not fleet.gpus:
            with LiveBar(ledger, len(fleet.adapters), progress):
                work_loop(fleet, retry_failed=retry_failed)
        else:
            run_processes(fleet, ledger, retry_failed, progress)
    except Interrupted as exc:
        back = sum(r["state"] == "pending" and (r["ended_at"] or 0) >= began and
                   (r["error"] or "").startswith("rollout stopped") for r in ledger.rows())
        raise Interrupted(exc.signum, f"{fleet.out}: stopped by {signal.Signals(exc.signum).name}; {back} job(s) in "
                                      "flight went back to pending; fix: re-run the rollout to resume") from None


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
    try:
        work_loop(FleetConfig.model_validate_json(fleet_json), retry_failed=retry_failed)
    except Interrupted as exc:
        sys.exit(exc.exit_code)  # its job is back to pending; the parent reports the stop in one line
    except KeyboardInterrupt:
        sys.exit(130)  # Ctrl-C before the worker's handlers were in place: it held no row yet


def run_processes(fleet: FleetConfig, ledger: Ledger, retry_failed: bool, progress: bool) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    procs = [ctx.Process(target=_local_worker, args=(fleet.model_dump_json(), retry_failed))
             for _ in range(fleet.workers)]
    for i, p in enumerate(procs):
        with pinned_gpu(fleet.gpus[i] if fleet.gpus else None):
            p.start()
    received: list[int] = []

    def stop_workers(signum: int) -> None:
        """Pass the stop on to every worker (each gives its job back), then wait for them below."""
        received.append(signum)
        for worker in procs:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)

    with on_stop_signals(stop_workers), LiveBar(ledger, len(fleet.adapters), progress and not received):
        for p in procs:
            p.join()
    if received:
        raise Interrupted(received[0])
    if any(p.exitcode != 0 for p in procs):
        raise RolloutStopped(f"{fleet.out}: a worker stopped (exit codes {[p.exitcode for p in procs]}); "
                             "fix: see the ledger errors (relora status), then re-run to resume")
