"""The run record: relora.json, typed, written and read in this one module.

Every reader (the fleet, the bench, the search check, perf) loads it through
RunRecord.load, so a renamed or missing field fails here, not deep in a report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from relora.core.method.measures import Event, GateRecord, Probe, Retention, TestCheck, WorkUnits
from relora.errors import InputError
from relora.io import atomic_write

RECORD_FILE = "relora.json"
EVENTS_FILE = "events.jsonl"


class InitInfo(BaseModel):
    """What the init did; relora.json's RunRecord extends it."""

    model_config = ConfigDict(extra="forbid")

    alpha: float | None = None  # the init's fusion coefficients (None: no old adapter in the init)
    beta: float | None = None
    probes: list[Probe] = []
    search_strategy: str | None = None  # bo, grid or gradient
    coefficients: dict[str, tuple[float, float]] | None = None  # gradient: (alpha, beta) per group of modules
    search_known_earlier: int | None = None  # earlier searches' best points on this base pair in the design
    search_s: float = 0.0  # charged search cost: delta projection + probes (as recorded, also when reused)
    search_wall_s: float | None = None  # what this process spent on it
    search_examples_scored: int | None = None  # probes' D_val examples, plus the gradient steps' training examples
    search_train_examples: int = 0  # of those, the training examples (forward and backward)
    search_train_tokens: int = 0  # and their tokens
    search_stopped_early: bool | None = None
    fusion_dropped_energy: float | None = None
    delta_cached: bool | None = None
    delta_dropped_energy_mean: float | None = None
    delta_relative_norm_mean: float | None = None
    start_retention: float | None = None  # the searched start's retention on the update probe (search.min_retention)
    start_replaced: bool = False  # it kept less than search.min_retention: training started from PortLLM's start


class Metrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    val_accuracy: float  # on D_val at the last screen: argmax of the summed answer log-likelihood
    val_loss: float
    test_accuracy: float | None = None
    test_loss: float | None = None
    val_accuracy_norm: float | None = None  # argmax of the per-token mean: differs only for multi-token answers
    test_accuracy_norm: float | None = None


class RunRecord(InitInfo):
    """What one readapt run did and measured (the init's fields, then the run's), with the provenance
    to reproduce it."""

    method: str
    metrics: Metrics
    time_to_ready_s: float | None  # from the start of re-adaptation, search included
    steps_to_ready: int | None
    threshold: float | None
    # the examples readiness and gates were judged on: "gate set" (disjoint from D_val; n_examples["val_ready"])
    # or "D_val" (data.ready_size 0: the search's own examples). Records before gate sets: D_val unless ready_size
    judged_on: str = "D_val"
    steps: int
    train_s: float
    total_s: float
    load_s: float
    labels: list[str]
    peak_rss_mb: float
    n_examples: dict[str, int]
    val_correct: list[bool]  # per D_val example, in D_val order, at the last evaluation
    config: dict[str, Any]
    seed: int
    hashes: dict[str, str]
    git_revision: str | None
    tracking: dict[str, str] | None = None  # where each tracking sink put the run (a directory, an MLflow run id)
    packages: dict[str, str | None]
    device: str = "cpu"  # where it ran, and the frozen base's dtype (records before devices: CPU, float32)
    dtype: str = "float32"
    peak_device_memory_mb: float | None = None  # CUDA's peak allocation; None on the CPU (see peak_rss_mb)
    cpu_s: float | None = None  # CPU seconds (all threads) of the search and training in this process
    work: WorkUnits | None = None  # the same compute counted: examples scored, training examples and tokens
    retention: Retention | None = None  # the update kept (update_probe); None without a probe
    gate: GateRecord | None = None  # the readiness test: its power, every look, the verdict on the saved adapter
    test_check: TestCheck | None = None  # paired gate and a test split: new - old on test, after the decision
    serving_warnings: list[str] = []  # what a serving engine would warn about in the saved adapter (its rank)

    @field_validator("val_correct", mode="before")
    @classmethod
    def _legacy_string(cls, value: Any) -> Any:
        """Records written before this type stored correctness as a '0101' string."""
        return [c == "1" for c in value] if isinstance(value, str) else value

    def save(self, run_dir: Path) -> None:
        atomic_write(run_dir / RECORD_FILE, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: str | Path) -> RunRecord:
        """A run's record; a damaged one (cut short, edited, from another version) is refused in one line."""
        path = Path(run_dir) / RECORD_FILE
        try:
            return cls.model_validate_json(path.read_text())
        except (ValidationError, UnicodeDecodeError) as exc:
            raise InputError(path, "is damaged (cut short, edited, or not a relora.json)",
                             "re-run the job that wrote it") from exc

    @staticmethod
    def exists(run_dir: str | Path) -> bool:
        return (Path(run_dir) / RECORD_FILE).is_file()


def read_events(run_dir: str | Path) -> list[Event]:
    """events.jsonl of a finished run, in order."""
    lines = (Path(run_dir) / EVENTS_FILE).read_text().splitlines()
    return [Event(**json.loads(line)) for line in lines if line.strip()]
