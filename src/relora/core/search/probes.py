"""What a search records: each probe, BO's proposals, and the best observed pair."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

GpState = tuple[float, float, float]  # (outputscale, lengthscale, noise)
Score = float | tuple[float, float]  # what an objective returns: loss, or (loss, accuracy)


def as_score(value: Score) -> tuple[float, float | None]:
    """(loss, accuracy or None): synthetic objectives know only a loss."""
    return (float(value[0]), float(value[1])) if isinstance(value, tuple) else (float(value), None)


@dataclass(frozen=True)
class Probe:
    alpha: float
    beta: float
    val_loss: float
    propose_s: float = 0.0  # GP fit + acquisition time that chose this point
    eval_s: float = 0.0
    n_examples: int = 0  # D_val examples scored (0 in records older than multi-fidelity)
    stage: str = "explore"  # "explore" (design, BO or grid) or "rescore" (all of D_val)
    log_ei: float | None = None  # log EI at the point when BO proposed it
    gp_state: GpState | None = None  # hyperparameters of the GP that proposed it
    val_accuracy: float | None = None  # on the same examples (None: the objective reports loss only)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Proposal:
    alpha: float
    beta: float
    log_ei: float
    gp_state: GpState
    seconds: float


def best_probe(probes: list[Probe]) -> Probe:
    """Eq. 9: the best observed pair (lowest validation loss)."""
    return min(probes, key=lambda p: p.val_loss)
