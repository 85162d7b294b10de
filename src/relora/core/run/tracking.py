"""Tracking sinks: a finished run's events sent to TensorBoard and MLflow, as transformers' Trainer would.

events.jsonl stays the record of truth; a sink gets a copy of it when the run ends (before its output
directory is committed): per readiness check `train/loss`, `eval/loss`, `eval/accuracy`; per search probe
`search/val_loss`; the time to ready; the config as parameters; the record's final metrics. The sinks'
libraries are optional extras, imported only when a run asks for them.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from relora.core.method.record import RunRecord
from relora.core.method.measures import Event
from relora.errors import InputError

SINKS = {"tensorboard": ("tensorboardX", "relora[tensorboard]"), "mlflow": ("mlflow", "relora[mlflow]")}
TENSORBOARD_DIR = "tensorboard"


def check_sinks(sinks: list[str]) -> None:
    """Each asked sink's library is installed, else one line naming the pip install."""
    for sink in sinks:
        module, extra = SINKS[sink]
        if importlib.util.find_spec(module) is None:
            raise InputError("tracking", f"{sink} tracking needs {module}, which is not installed",
                             f"pip install '{extra}'")


def flat_params(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The config as flat `training.lr`-style parameters (MLflow and TensorBoard take flat string values)."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flat_params(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def scalars(record: RunRecord, events: list[Event]) -> Iterator[tuple[str, float, int]]:
    """(tag, value, step) for everything a sink receives, in the Trainer's tag convention."""
    for e in events:
        if e.train_loss is not None:
            yield "train/loss", e.train_loss, e.step
        yield "eval/loss", e.val_loss, e.step
        yield "eval/accuracy", e.val_accuracy, e.step
    for i, probe in enumerate(record.probes):
        yield "search/val_loss", probe.val_loss, i
    if record.time_to_ready_s is not None:
        yield "eval/time_to_ready_s", record.time_to_ready_s, record.steps_to_ready or 0
    final = record.metrics.model_dump(exclude_none=True)
    yield from ((f"final/{name}", value, record.steps) for name, value in final.items())


def send(sinks: list[str], record: RunRecord, events: list[Event], run_dir: Path, run_name: str) -> dict[str, str]:
    """Send the run to each sink; returns where each one put it (relora.json keeps it)."""
    where: dict[str, str] = {}
    senders = {"tensorboard": lambda: _tensorboard(record, events, run_dir / TENSORBOARD_DIR),
               "mlflow": lambda: _mlflow(record, events, run_name)}
    for sink in [s for s in senders if s in sinks]:
        try:
            where[sink] = senders[sink]()
        except Exception as exc:  # noqa: BLE001 - a tracking server that is down must not lose the finished run
            reason = without_secrets(str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__)
            where[sink] = f"not sent: {reason}"
            print(f"relora: warning: --track {sink}: not sent ({reason}); the run itself is saved", file=sys.stderr)
    return where


def without_secrets(text: str) -> str:
    """A URL's user:password (http://user:secret@host/) hidden wherever it appears in a message."""
    return re.sub(r"(://)[^@/\s]*@", r"\1***@", text)


def _tensorboard(record: RunRecord, events: list[Event], log_dir: Path) -> str:
    from tensorboardX import SummaryWriter

    with SummaryWriter(str(log_dir)) as writer:
        writer.add_text("config", "\n".join(f"{k}: {v}" for k, v in flat_params(record.config).items()), 0)
        for tag, value, step in scalars(record, events):
            writer.add_scalar(tag, value, step)
    return TENSORBOARD_DIR  # inside the run's output directory


def _mlflow(record: RunRecord, events: list[Event], run_name: str) -> str:
    """One MLflow run per readapt; MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME and MLFLOW_RUN_ID are read
    by MLflow itself, as under the Trainer. A fleet job nests under RELORA_MLFLOW_PARENT_RUN_ID."""
    import mlflow

    if without_secrets(mlflow.get_tracking_uri()) != mlflow.get_tracking_uri():
        # MLflow prints "View run at <uri>" lines, credentials and all: not for a URI that holds a secret
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    parent = os.environ.get("RELORA_MLFLOW_PARENT_RUN_ID")
    with mlflow.start_run(run_name=run_name, nested=parent is not None, parent_run_id=parent) as active:
        params = flat_params(record.config)
        mlflow.log_params({k: v[:500] for k, v in params.items()})
        mlflow.set_tags({"relora.method": record.method, "relora.git_revision": record.git_revision or "-"})
        for tag, value, step in scalars(record, events):
            mlflow.log_metric(tag, value, step=step)
        return active.info.run_id
