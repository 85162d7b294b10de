"""One rollout job per adapter, as any executor runs it (relora.fleet.rollout starts them).

A job re-adapts, measures the old service and the fallback, gates on the threshold and
publishes atomically. Jobs are claimed from the ledger, so a re-run resumes, two rollouts
cooperate, and a crash loses nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from relora.core.model.adapter import LINEAGE_FILE
from relora.core.run.outputs import MARKER, check_replaceable
from relora.errors import InputError, Interrupted, RolloutStopped, cannot_write, raise_if_stopped, stopped
from relora.fleet.config import AdapterEntry, FleetConfig
from relora.fleet.ledger import Ledger
from relora.fleet.signals import interruptible
from relora.io import atomic_dir, cache_root

PUBLISHED_FILES = ("adapter_config.json", "adapter_model.safetensors", LINEAGE_FILE, "relora.json", "events.jsonl",
                   MARKER)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def publish(run_dir: Path, target: Path) -> None:
    """Copy the run's adapter and provenance into published/<name> via a temp dir and a rename; what is there
    already is replaced only if relora wrote it."""
    check_replaceable(target, flag="out:")
    with atomic_dir(target, replace=True) as tmp:
        for name in PUBLISHED_FILES:
            shutil.copy2(run_dir / name, tmp / name)


def job_device(record_device: str, assigned: list[str] | None) -> str:
    """Where a job ran, as the ledger shows it: the torch device, the GPUs its process could see, and
    the GPUs its executor assigned (Ray), so a mis-pinned job is visible."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return record_device + (f"; CUDA_VISIBLE_DEVICES={visible}" if visible is not None else "") + (
        f"; assigned GPUs {','.join(assigned)}" if assigned is not None else "")


def run_job(fleet: FleetConfig, entry: AdapterEntry, assigned: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    """Re-adapt one adapter and gate it; returns the final state and the ledger fields. The gate (readapt's:
    the paired test against the old service, its looks and the power check) decides; the job adds the old
    service's and PortLLM's D_val quality for the report, from the same loaded items."""
    from relora.core.run.old_scores import old_service_correct
    from relora.core.run.inputs import load_inputs, score_items
    from relora.core.run.readapt import plan_run, readapt
    from relora.core.model.scoring import negative_flip_rate

    plan, cache = plan_run(fleet.readapt_config(entry)), cache_root(fleet.cache_dir)  # validated and checked once
    cfg = plan.cfg
    loaded = load_inputs(cfg, plan.method, cache)  # read, checked and tokenized once
    record = readapt(plan, progress=False, loaded=loaded)
    old_dval = old_service_correct(cfg, loaded, cache, "dval")  # remembered: readapt's paired gate scored it
    fallback = score_items(loaded.new_dir, entry.path, loaded.val, loaded.pad_id, cfg)  # PortLLM, if not published
    gate, test = record.gate, record.test_check
    fields = {
        "threshold": record.threshold, "steps": record.steps, "probes": len(record.probes),
        "known_earlier": record.search_known_earlier,
        "search_s": record.search_s, "train_s": record.train_s, "total_s": record.total_s,
        "time_to_ready_s": record.time_to_ready_s, "alpha": record.alpha, "beta": record.beta,
        "val_accuracy": record.metrics.val_accuracy, "test_accuracy": record.metrics.test_accuracy,
        "old_service_val_accuracy": sum(old_dval) / len(old_dval), "fallback_val_accuracy": fallback.accuracy,
        "negative_flip_rate": negative_flip_rate(old_dval, record.val_correct),
        "judged_on": record.judged_on, "gate_examples": record.n_examples.get("val_ready"),
        "retention": record.retention.value if record.retention else None, "cpu_s": record.cpu_s,
        "examples_scored": record.work.examples_scored if record.work else None,
        "train_tokens": record.work.train_tokens if record.work else None,
        "device": job_device(record.device, assigned),
    } | gate_fields(record)
    kept = retention_ok(fleet.defaults.min_retention, fields["retention"])
    loads, fields["preflight"] = preflight_ok(fleet, Path(cfg.out), loaded.new_dir, cache)
    if gate is not None and gate.published and kept and loads:
        target = Path(fleet.out) / "published" / entry.name
        publish(Path(cfg.out), target)
        return "ready", fields | {"output_path": str(target)}
    why = f"gate: {gate.verdict if gate else 'none set'}" if gate is None or not gate.published else (
        f"kept too little of the update (retention {_fmt(fields['retention'])} < min_retention "
        f"{fleet.defaults.min_retention})" if not kept else f"a serving engine would not load it ({fields['preflight']})")
    return "below-threshold", fields | {"output_path": None, "error": f"{why}: serve the old adapter (PortLLM fallback)"}


def gate_fields(record: Any) -> dict[str, Any]:
    """The ledger's view of one decision: the test, its alpha and margin, the looks, the bound, the verdict,
    the examples it scored, and the test split's check."""
    gate, test = record.gate, record.test_check
    if gate is None:
        return {}
    last = gate.looks[-1] if gate.looks else None
    return {"gate_test": gate.test, "gate_alpha": gate.alpha, "gate_margin": gate.margin, "gate_looks": len(gate.looks),
            "gate_lower": last.lower if last else None, "gate_verdict": gate.verdict,
            "gate_examples_scored": gate.examples_scored, "certifiable_margin": gate.certifiable_margin,
            "gate_rejects": sum(look.verdict == "reject" for look in gate.looks),
            "gate_reject_examples": sum(look.examples for look in gate.looks if look.verdict == "reject"),
            "discordance": gate.measured_discordance,
            "old_service_test_accuracy": test.old_accuracy if test else None,
            "test_diff": test.diff if test else None, "test_upper": test.upper if test else None}


def retention_ok(minimum: float | None, retention: float | None) -> bool:
    """A fleet may require a share of the update kept; an unmeasurable retention does not pass such a gate."""
    return minimum is None or (retention is not None and retention >= minimum)


def _fmt(value: float | None) -> str:
    return "unmeasured" if value is None else f"{value:.2f}"


def preflight_ok(fleet: FleetConfig, run_dir: Path, base: Path, cache: Path) -> tuple[bool, str | None]:
    """The fleet's preflight engines on the new adapter, on the job's resolved new base: (every one loads it,
    the verdict lines)."""
    if not fleet.preflight:
        return True, None
    from relora.serve.preflight import check, verdict_line

    found = check(run_dir, tuple(fleet.preflight), base, cache=cache)
    return not any(f.refused for fs in found.values() for f in fs), " | ".join(verdict_line(e, fs) for e, fs in found.items())


def _heartbeat(ledger: Ledger, name: str, worker: str, lease_s: float, stop: threading.Event) -> None:
    while not stop.wait(max(lease_s / 4, 1.0)):
        try:
            ledger.heartbeat(name, worker, lease_s)
        except Exception:  # noqa: BLE001 - a ledger that cannot be written: the job's own finish reports it
            return


def process(fleet: FleetConfig, ledger: Ledger, entry: AdapterEntry, worker: str,
            assigned: list[str] | None = None) -> str:
    """Run a claimed job with a lease heartbeat; record its outcome. A full disk, in the job or in the
    ledger, gives the job back (pending) and raises RolloutStopped."""
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(ledger, entry.name, worker, fleet.lease_s, stop), daemon=True)
    try:
        beat.start()  # inside the try: a stop signal may land while the thread starts
        try:
            state, fields = run_job(fleet, entry, assigned)
        except InputError as exc:
            state, fields = "failed", {"error": str(exc)}
        except Exception as exc:  # one broken adapter must not stop the fleet; a full disk stops it
            if cannot_write(exc) is not None:
                raise
            state, fields = "failed", {"error": f"{exc.__class__.__name__}: {exc}"}
        finally:
            stop.set()
        ledger.finish(entry.name, worker, state, **fields)
    except Interrupted as exc:
        stop.set()
        give_back(fleet, ledger, entry.name, worker, exc)  # abandoned whole: nothing of it is published
        raise
    except RolloutStopped as exc:  # the ledger itself cannot be written: its own line already names it
        stop.set()
        give_back(fleet, ledger, entry.name, worker, exc)
        raise
    except Exception as exc:
        cause = cannot_write(exc)
        if cause is None:
            raise
        give_back(fleet, ledger, entry.name, worker, cause)
        raise stopped(fleet.out, cause) from exc
    return state


def give_back(fleet: FleetConfig, ledger: Ledger, name: str, worker: str, cause: BaseException) -> None:
    """Return a stopped job's row to pending at once. The job will be redone, so what it wrote is freed
    first: the ledger may sit on the full disk itself and need the room. If it still cannot write, the
    row stays running, and the next rollout on this host releases it (its process is gone)."""
    shutil.rmtree(Path(fleet.out) / "runs" / name, ignore_errors=True)
    try:
        ledger.finish(name, worker, "pending", error=f"rollout stopped: {str(cause).splitlines()[0][:200]}")
    except Exception:  # noqa: BLE001 - the stop itself must still be reported in one line
        pass


def work_loop(fleet: FleetConfig, worker: str | None = None, retry_failed: bool = False, poll_s: float = 2.0) -> int:
    """Claim and process adapters until every row is final; returns how many this worker did.

    Rows another worker holds are waited for: they finish, or their lease expires
    (a dead process) and this worker reclaims them."""
    ledger = Ledger(fleet.ledger_url)
    worker = worker or worker_id()
    with interruptible():
        try:
            return _claim_until_final(fleet, ledger, worker, retry_failed, poll_s)
        except Interrupted as exc:
            # a job in flight gave its row back already; this catches a row claimed just before the signal
            ledger.release_worker(worker, f"rollout stopped: {exc}")
            raise


def _claim_until_final(fleet: FleetConfig, ledger: Ledger, worker: str, retry_failed: bool, poll_s: float) -> int:
    done, retry = 0, retry_failed
    while True:
        for entry in fleet.adapters:
            raise_if_stopped()  # a safe point: a stop whose first raise was swallowed claims nothing more
            if ledger.claim(entry.name, worker, fleet.lease_s, retry):
                process(fleet, ledger, entry, worker)
                done += 1
        retry = False  # failed rows get one more try per rollout, not an endless loop
        if not any(r["state"] in ("pending", "running") for r in ledger.rows()):
            return done
        time.sleep(poll_s)
