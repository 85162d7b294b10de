"""`relora rollout FLEET.yaml`: take a whole fleet of adapters from Theta to Theta'.

The output root is checked, the ledger gets a row per adapter, and the
configured executor runs the jobs (relora.fleet.worker) until every row is final.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relora.core.run.gate_plan import plan_gate
from relora.core.run.inputs import gate_size
from relora.core.run.outputs import MARKER, check_out
from relora.core.run.tracking import check_sinks, without_secrets
from relora.core.model.weights import model_files
from relora.errors import FULL_ERRNOS, InputError, RolloutStopped, Unavailable, Unwritable, cannot_write, stopped
from relora.fleet.config import AdapterEntry, FleetConfig
from relora.fleet.ledger import Ledger
from relora.io import cache_root, content_hash


def fleet_inputs(fleet: FleetConfig) -> list[tuple[str, Path]]:
    """Every local path the rollout reads: both bases (unless hub ids) and each adapter's files."""
    found = [(key, Path(getattr(fleet, key))) for key in ("old_base", "new_base") if Path(getattr(fleet, key)).exists()]
    for entry in fleet.adapters:
        found += [(f"adapter {entry.name}'s {key}", Path(getattr(entry, key)))
                  for key in ("path", "train", "val", "test") if getattr(entry, key)]
    return found


def check_output_root(fleet: FleetConfig) -> None:
    """out: is a directory of its own (not empty, /, the current directory or an ancestor), holds no input and
    lies inside none (checked before anything is written), and is writable."""
    root = check_out(fleet.out, flag="out:", inputs=[(f"{what} ({path})", path) for what, path in fleet_inputs(fleet)])
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise stopped(fleet.out, exc) from exc
        raise Unwritable(root, f"output root is not writable ({exc.strerror})", "choose a writable out:") from exc


def input_contents(spec: str | None, cache: Path) -> str | None:
    """A content hash for one input: a file's, a directory's files' (hidden ones aside), or a hub id as written."""
    if not spec:
        return None
    path = Path(spec)
    if path.is_file():
        return content_hash([path], cache)
    if path.is_dir() and (path / "config.json").is_file():
        try:  # a model directory: hashed as its lineage sidecar hashes it (the weights transformers loads)
            return content_hash(model_files(path), cache)
        except InputError:
            pass  # ambiguous weights: its job refuses it; any change still shows in the hash below
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(path).parts)]
        return content_hash(files, cache)
    return f"name:{spec}"


def row_inputs(fleet: FleetConfig, entry: AdapterEntry, cache: Path) -> tuple[str, str]:
    """(key, hashes as JSON) of what a row is made from: its inputs' contents and the config that shapes it."""
    cfg = fleet.readapt_config(entry)
    hashes = {key: input_contents(getattr(cfg, key), cache)
              for key in ("old_base", "new_base", "adapter", "train", "val", "test", "update_probe")}
    shaping = cfg.model_dump(mode="json", exclude={"out", "cache_dir", "force", "progress"}) | {
        "min_retention": fleet.defaults.min_retention, "preflight": fleet.preflight}
    text = json.dumps({"inputs": hashes, "config": shaping}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), json.dumps(hashes, sort_keys=True)


def withdraw(out: Path, names: list[str]) -> None:
    """Take down what rows made from other inputs published: they must not serve the new base. Moved aside
    first (one rename, so a server never reads half of it), then removed."""
    for name in names:
        target = out / "published" / name
        if target.is_dir() and (target / MARKER).is_file():
            aside = target.parent / f".{name}.withdrawn"
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(target, aside)
            shutil.rmtree(aside, ignore_errors=True)


def check_gpus(fleet: FleetConfig, source: str = "gpus") -> None:
    """gpus: [...] naming CUDA devices this machine does not have is the environment's fault (exit 3), found
    before any job runs, never a fleet that quietly trains on the CPU. gpus_optional: say so once and go on."""
    if not fleet.gpus:
        return
    import torch

    have = torch.cuda.device_count()
    missing = sorted({g for g in fleet.gpus if g >= have or g < 0})
    if not missing:
        return
    found = f"this machine has {have} CUDA device(s)" if have else "this machine has no CUDA device"
    if fleet.gpus_optional:
        print(f"relora: warning: gpus: {fleet.gpus} names GPU(s) {missing}, but {found}: the jobs run on the CPU "
              "(gpus_optional: true)", file=sys.stderr)
        return
    raise Unavailable(source, f"gpus: {fleet.gpus} names GPU(s) {missing}, but {found}",
                      "run on a machine with those GPUs, drop gpus:, or set gpus_optional: true to run on the CPU")


def check_gates(fleet: FleetConfig) -> None:
    """Every service's power check before the first job starts: a gate set too small for its margin stops the
    rollout in one line. A validation file that cannot be read is left to its own job, which fails its row."""
    for entry in fleet.adapters:
        cfg = fleet.readapt_config(entry)
        try:
            with open(cfg.val, encoding="utf-8") as fh:
                n = sum(1 for line in fh if line.strip())
        except (OSError, UnicodeDecodeError):
            continue
        try:
            plan_gate(cfg, gate_size(n, cfg))
        except InputError as exc:
            raise InputError(f"adapter {entry.name}: {cfg.val}", exc.problem, exc.fix) from exc


def rollout(fleet: FleetConfig, retry_failed: bool = False, progress: bool = True) -> dict[str, int]:
    """Run the fleet on the configured executor; returns the ledger's state counts.
    An output that cannot be written (a full disk) stops it with RolloutStopped, wherever it happens."""
    check_output_root(fleet)
    check_gates(fleet)
    check_gpus(fleet)
    try:
        ledger = Ledger(fleet.ledger_url)
        cache = cache_root(fleet.cache_dir)
        redo = ledger.register([e.name for e in fleet.adapters], {e.name: fleet.method_of(e) for e in fleet.adapters},
                               {e.name: fleet.gate_of(e).absolute for e in fleet.adapters},
                               {e.name: row_inputs(fleet, e, cache) for e in fleet.adapters})
        withdraw(Path(fleet.out), redo)
        ledger.release_dead(socket.gethostname(), process_alive)
        sweep_leftovers(Path(fleet.out), ledger)
        with fleet_mlflow_run(fleet):
            if fleet.executor == "ray":
                from relora.fleet.executors.ray import run_on_ray

                run_on_ray(fleet, ledger, retry_failed, progress)
            else:
                from relora.fleet.executors.local import run_local

                run_local(fleet, ledger, retry_failed, progress)
        return ledger.counts()
    except (InputError, RolloutStopped):
        raise
    except Exception as exc:
        cause = cannot_write(exc)
        if cause is None:
            raise
        raise stopped(fleet.out, cause) from exc


@contextmanager
def fleet_mlflow_run(fleet: FleetConfig) -> Iterator[None]:
    """With MLflow tracking, one parent run for the rollout: each job's run nests under it (its id travels in
    RELORA_MLFLOW_PARENT_RUN_ID, which worker processes inherit)."""
    if "mlflow" not in fleet.defaults.readapt.get("tracking", []):
        yield
        return
    check_sinks(["mlflow"])
    import mlflow

    if without_secrets(mlflow.get_tracking_uri()) != mlflow.get_tracking_uri():
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # its "View run at" lines
    with mlflow.start_run(run_name=f"fleet {Path(fleet.out).name}") as parent:
        os.environ["RELORA_MLFLOW_PARENT_RUN_ID"] = parent.info.run_id
        try:
            yield
        finally:
            del os.environ["RELORA_MLFLOW_PARENT_RUN_ID"]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def sweep_leftovers(out: Path, ledger: Ledger) -> None:
    """Remove what dead attempts left: half-built run directories and half-published copies of every
    adapter that no live job holds (a running row's worker may still be writing its own)."""
    rows = ledger.rows()
    busy = {r["name"] for r in rows if r["state"] == "running"}
    for parent in (out / "runs", out / "published"):
        for leftover in parent.glob(".*") if parent.is_dir() else ():
            # .<name>.partial, .<name>.<tmp>: the longest adapter name it starts with owns it
            owners = [r["name"] for r in rows if leftover.name.startswith(f".{r['name']}.")]
            if max(owners, key=len, default=None) not in busy:
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    for probe in out.glob(".write-test-*"):
        probe.unlink(missing_ok=True)
