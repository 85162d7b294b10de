"""What a run measures, as relora.json stores it: each search probe, each training event, the gate's looks
and verdict, the test-split check and retention. A leaf: the record schema (record.py) and the modules that
measure (search, train, readiness, retention) all import these types from here, and it imports nothing of relora's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

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


@dataclass(frozen=True)
class Event:
    step: int
    wall_s: float
    stage: int
    train_loss: float | None
    val_loss: float  # on D_val: the screen (the gate set is scored only by a confirmation)
    val_accuracy: float
    look: str | None = None  # a confirmation on the gate set at this checkpoint: "publish" or "reject"

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


class Look(BaseModel):
    """One confirmation on the gate set."""

    model_config = ConfigDict(extra="forbid")

    step: int
    screen_accuracy: float  # the D_val point estimate that sent this checkpoint to the gate
    bar: float | None = None  # the screen's bar it cleared (None in records older than the sliding screen)
    examples: int  # gate examples the candidate was scored on before the look stopped
    estimate: float  # the mean difference (paired) or accuracy (absolute) on those examples
    lower: float  # the confidence sequence's lower bound at the look's alpha
    upper: float  # and its upper bound at the early-reject level
    verdict: str  # "publish" or "reject"


class GateRecord(BaseModel):
    """What the gate was, what it could certify, and every look it took: relora.json's `gate`."""

    model_config = ConfigDict(extra="forbid")

    test: str  # the method, named and cited
    kind: str  # "paired" (threshold old - margin) or "absolute" (a fixed accuracy)
    alpha: float  # per service, over all looks
    looks_planned: int
    alpha_per_look: float
    margin: float | None
    threshold: float | None  # the absolute threshold; for a paired gate, old gate accuracy - margin (a reading aid)
    chunk: int
    gate_examples: int
    old_gate_accuracy: float | None
    old_dval_accuracy: float | None
    screen_bar: float  # D_val accuracy a checkpoint needs before it is confirmed
    screen: str = "margin"  # how the bar was set: old - margin, or "powered" (old - (margin - certifiable))
    screen_bar_end: float | None = None  # "sliding": the bar at the budget's end (old - margin), linear from screen_bar
    certifiable_margin: float | None  # the smallest margin this gate certifies with 80% power (paired)
    assumed_discordance: float
    measured_discordance: float | None = None  # over the gate examples the looks scored
    allow_underpowered: bool = False
    underpowered: bool = False
    futility: float | None = None  # a look stops unpublished once the candidate is shown this far below (None: margin)
    old_examples: int = 0  # the old service's scoring: gate set and D_val
    old_scoring_cpu_s: float = 0.0  # what it cost when it was scored (charged to cpu_s even when remembered)
    looks: list[Look] = []
    verdict: str = "no look"  # "published" (the saved adapter passed), "not certified" or "no look"

    @property
    def examples_scored(self) -> int:
        """Gate and screen examples the gate cost: the old service's, and the candidate's at every look."""
        return self.old_examples + sum(look.examples for look in self.looks)

    @property
    def published(self) -> bool:
        return self.verdict == "published"


class TestCheck(BaseModel):
    """The published question asked again on the test split, after the decision: new - old, paired."""

    model_config = ConfigDict(extra="forbid")

    examples: int
    old_accuracy: float
    new_accuracy: float
    diff: float
    lower: float  # 95% bounds on the mean difference (the same betting confidence sequence, one look)
    upper: float


class WorkUnits(BaseModel):
    """What a run's compute did, counted rather than timed (a shared machine distorts CPU seconds, not these):
    the same parts cpu_s charges, the old service's scoring included."""

    model_config = ConfigDict(extra="forbid")

    examples_scored: int  # forward only: search probes, D_val screens, the gate's looks and the old service's scores
    train_examples: int  # forward and backward: training batches and the gradient search's
    train_tokens: int  # the tokens (prompt and answer) of those training examples


class Retention(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: float | None  # (L_old - L_new) / (L_old - L_portllm); None when the update left the probe's loss as it was
    loss_old: float  # old base + old adapter
    loss_portllm: float  # new base + old adapter
    loss_new: float  # new base + this run's adapter (or the new base alone)
    blocks: int
    probe_hash: str
