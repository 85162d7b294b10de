"""One bench cell, typed: a readapt run's record plus where it sits in the bench and how it was judged.

results.json stores cells as this model dumps them, and every report reads them back through
``cells_of``, so a renamed or missing field fails on load, not deep inside a table.
"""

from __future__ import annotations

from typing import Any

from relora.core.method.record import Metrics, RunRecord
from relora.core.method.measures import Event


class BenchCell(RunRecord):
    cell: str  # the method, or "zero-shot (old base)", or a λ-sweep label
    events: list[Event]  # the run's readiness checks, in order
    corpus: str  # which update (the evolved base's corpus)
    task: str
    threshold: float  # the paper's readiness rule over the group: the lowest best accuracy of its trained methods
    ready_step: int | None  # first check at or above threshold
    ready_s: float | None
    old_adapter_old_base_val_accuracy: float  # the old service's own quality: the bar users care about
    restore_step: int | None  # first check at or above the old service's quality
    restore_s: float | None
    zero_shot_old_base: Metrics
    lambdas: tuple[float, float] | None = None  # λ-sweep cells only
    anchor: str | None = None
    negative_flip_rate: float | None = None  # against the old service, λ-sweep cells only

    @property
    def init_val_accuracy(self) -> float | None:
        """Accuracy at step 0: what the init alone serves."""
        return self.events[0].val_accuracy if self.events else None

    @property
    def in_sweep(self) -> bool:
        return self.lambdas is not None


def cells_of(results: dict[str, Any]) -> list[BenchCell]:
    """A results.json's cells, validated."""
    return [c if isinstance(c, BenchCell) else BenchCell.model_validate(c) for c in results["cells"]]
