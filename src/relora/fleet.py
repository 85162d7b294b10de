"""`relora rollout FLEET.yaml`: take a whole fleet of adapters from Theta to Theta'.

Each adapter is one job: re-adapt, measure the old service and the fallback,
gate on the threshold, publish atomically. Jobs are claimed from the ledger,
so a re-run resumes, two rollouts cooperate, and a crash loses nothing.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from relora.errors import InputError, RolloutStopped
from relora.fleet_config import AdapterEntry, FleetConfig
from relora.ledger import FINAL, Ledger

FATAL_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT}
PUBLISHED_FILES = ("adapter_config.json", "adapter_model.safetensors", "relora.json", "events.jsonl")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def service_correctness(fleet: FleetConfig, entry: AdapterEntry, base: str, labels: list[str]) -> list[bool]:
    """Per-example validation correctness of `base` + the old adapter (same D_val sample as readapt).
    Only the val file is tokenized; the label set is the one readapt validated."""
    from relora.adapter import attach_lora, read_adapter, set_factors
    from relora.data import read_jsonl, sample, tokenize
    from relora.models import cache_root, load_tokenizer, resolve_base, shared_model
    from relora.scoring import evaluate

    cfg = fleet.readapt_config(entry)
    model_dir = resolve_base(base, cache_root(fleet.cache_dir))
    tok = load_tokenizer(model_dir)
    val = tokenize(read_jsonl(cfg.val), labels, tok, cfg.data.template, cfg.data.max_length)
    old = read_adapter(entry.path)
    model = attach_lora(shared_model(model_dir), old, cfg.seed)
    try:
        set_factors(model, old.factors)
        return evaluate(model, sample(val, cfg.data.val_size, cfg.seed), tok.pad_token_id,
                        cfg.training.eval_batch_size).correct
    finally:
        model.unload()


def publish(run_dir: Path, target: Path) -> None:
    """Copy the run's adapter and provenance into published/<name> via a temp dir and a rename."""
    tmp = target.parent / f".{target.name}.publishing"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in PUBLISHED_FILES:
        shutil.copy2(run_dir / name, tmp / name)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def run_job(fleet: FleetConfig, entry: AdapterEntry) -> tuple[str, dict[str, Any]]:
    """Re-adapt one adapter and gate it; returns the final state and the ledger fields."""
    from relora.readapt import readapt

    cfg = fleet.readapt_config(entry)
    record = readapt(cfg, progress=False)
    new_correct = [c == "1" for c in record["val_correct"]]
    old_correct = service_correctness(fleet, entry, fleet.old_base, record["labels"])
    fallback = service_correctness(fleet, entry, fleet.new_base, record["labels"])
    flips = sum(o and not n for o, n in zip(old_correct, new_correct, strict=True)) / len(new_correct)
    fields = {
        "search_s": record["search_s"], "train_s": record["train_s"], "total_s": record["total_s"],
        "time_to_ready_s": record["time_to_ready_s"], "alpha": record["alpha"], "beta": record["beta"],
        "val_accuracy": record["metrics"]["val_accuracy"], "test_accuracy": record["metrics"].get("test_accuracy"),
        "old_service_val_accuracy": sum(old_correct) / len(old_correct),
        "fallback_val_accuracy": sum(fallback) / len(fallback), "negative_flip_rate": flips,
    }
    if record["metrics"]["val_accuracy"] >= fleet.threshold_of(entry):
        target = Path(fleet.out) / "published" / entry.name
        publish(Path(cfg.out), target)
        return "ready", fields | {"output_path": str(target)}
    return "below-threshold", fields | {"output_path": None,
                                        "error": "below threshold: serve the old adapter (PortLLM fallback)"}


def _heartbeat(ledger: Ledger, name: str, worker: str, lease_s: float, stop: threading.Event) -> None:
    while not stop.wait(max(lease_s / 4, 1.0)):
        ledger.heartbeat(name, worker, lease_s)


def process(fleet: FleetConfig, ledger: Ledger, entry: AdapterEntry, worker: str) -> str:
    """Run a claimed job with a lease heartbeat; record its outcome. Raises RolloutStopped."""
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(ledger, entry.name, worker, fleet.lease_s, stop), daemon=True)
    beat.start()
    try:
        state, fields = run_job(fleet, entry)
    except InputError as exc:
        state, fields = "failed", {"error": str(exc)}
    except OSError as exc:
        if exc.errno in FATAL_ERRNOS:
            ledger.finish(entry.name, worker, "pending", error=f"rollout stopped: {exc}")
            raise RolloutStopped(f"{fleet.out}: cannot write ({exc.strerror}); fix: free space or permissions, "
                                 "then re-run to resume") from exc
        state, fields = "failed", {"error": f"{exc.__class__.__name__}: {exc}"}
    except Exception as exc:  # one broken adapter must not stop the fleet
        state, fields = "failed", {"error": f"{exc.__class__.__name__}: {exc}"}
    finally:
        stop.set()
    ledger.finish(entry.name, worker, state, **fields)
    return state


def work_loop(fleet: FleetConfig, worker: str | None = None, retry_failed: bool = False, poll_s: float = 2.0) -> int:
    """Claim and process adapters until every row is final; returns how many this worker did.

    Rows another worker holds are waited for: they finish, or their lease expires
    (a dead process) and this worker reclaims them."""
    ledger = Ledger(fleet.ledger_url)
    worker = worker or worker_id()
    done, retry = 0, retry_failed
    while True:
        for entry in fleet.adapters:
            if ledger.claim(entry.name, worker, fleet.lease_s, retry):
                process(fleet, ledger, entry, worker)
                done += 1
        retry = False  # failed rows get one more try per rollout, not an endless loop
        if not any(r["state"] in ("pending", "running") for r in ledger.rows()):
            return done
        time.sleep(poll_s)


def _local_worker(fleet_json: str, retry_failed: bool) -> None:
    work_loop(FleetConfig.model_validate_json(fleet_json), retry_failed=retry_failed)


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
        from relora.fleet_ray import run_on_ray

        run_on_ray(fleet, ledger, retry_failed, progress)
    elif fleet.workers == 1:
        with LiveBar(ledger, len(fleet.adapters), progress):
            work_loop(fleet, retry_failed=retry_failed)
    else:
        run_processes(fleet, ledger, retry_failed, progress)
    return ledger.counts()


def run_processes(fleet: FleetConfig, ledger: Ledger, retry_failed: bool, progress: bool) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    procs = [ctx.Process(target=_local_worker, args=(fleet.model_dump_json(), retry_failed))
             for _ in range(fleet.workers)]
    for p in procs:
        p.start()
    with LiveBar(ledger, len(fleet.adapters), progress):
        for p in procs:
            p.join()
    if any(p.exitcode != 0 for p in procs):
        raise RolloutStopped(f"{fleet.out}: a worker stopped (exit codes {[p.exitcode for p in procs]}); "
                             "fix: see the ledger errors (relora status), then re-run to resume")


class LiveBar:
    """A tqdm bar of finished adapters, refreshed from the ledger by a background thread."""

    def __init__(self, ledger: Ledger, total: int, enabled: bool) -> None:
        self.ledger, self.stop = ledger, threading.Event()
        self.bar = tqdm(total=total, desc="rollout", unit="adapter", disable=not enabled)
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while True:
            counts = self.ledger.counts()
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
        counts = self.ledger.counts()
        self.bar.n = sum(counts[s] for s in FINAL)
        self.bar.set_postfix({k: v for k, v in counts.items() if v})
        self.bar.close()
