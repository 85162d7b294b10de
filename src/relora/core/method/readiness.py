"""Readiness: a checkpoint is screened on D_val, and one that passes is confirmed once on the gate set.

The screen is a point estimate on the search's own split (free: the training loop scores it anyway). A
confirmation is a look: the paired (or one-sample) betting test of relora.core.math.gate at alpha / looks, scored
chunk by chunk on gate examples that no search, step or screen ever saw, and stopped as soon as a chunk
settles it. So over every look a run takes, the chance of publishing a service whose true difference is
below -margin is at most alpha.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from relora.core.math import gate as tests
from relora.core.model.config import Gate, GateConfig
from relora.core.model.data import ScoringItem
from relora.core.model.scoring import evaluate
from relora.core.method.measures import GateRecord, Look, TestCheck


@dataclass(frozen=True, kw_only=True)
class LookPolicy:
    """When a method sends a checkpoint to the gate, and when a look gives up (a method's defaults; the gate config's
    own `futility`, when set, wins).

    screen "margin": a checkpoint whose D_val accuracy is at least the old service's minus the margin is confirmed.
    screen "powered": only one at least the old service's minus (margin - certifiable margin), i.e. where the gate
    has the 80% power it was planned with. The certifiable margin is what a candidate exactly as good as the old
    service clears with 80% power, so one that sits (margin - certifiable) below it clears about as often; below
    that, a look mostly reads the whole gate set and fails, and it costs one of the run's looks. A look costs more
    than the training steps it would take to get there (a gate set of 1,088 against 5 steps of 8), so the powered
    screen trains on instead.
    screen "sliding": the powered bar at step 0, falling linearly to the margin's bar at the budget's end. Training
    is what the powered screen buys with the looks it saves; as the budget runs out there is less training left to
    buy, and a service that never reaches the powered bar on a noisy 64-example D_val would never reach the gate.
    futility: a look stops unpublished once the candidate is shown this far below the old service."""

    screen: str = "margin"
    futility: float | None = None

    def screen_slack(self, margin: float, certifiable: float | None) -> float:
        """How far below the old service's D_val accuracy a checkpoint may sit at step 0 and still be confirmed."""
        if self.screen == "margin":
            return margin
        return max(0.0, margin - certifiable) if certifiable is not None else 0.0

    def end_slack(self, margin: float, certifiable: float | None) -> float:
        """The same at the budget's end: the margin for a sliding screen, the step-0 slack for the others."""
        return margin if self.screen == "sliding" else self.screen_slack(margin, certifiable)


def looks_planned(cfg_gate: GateConfig, stop_when_ready: bool) -> int:
    """Without stop-when-ready only the final adapter is confirmed, once."""
    return cfg_gate.looks if stop_when_ready else 1


class OldService(Protocol):
    """The old service's per-example correctness on the gate set, read a prefix at a time: the run floor scores it
    as the looks reach each chunk (or all at once) and remembers it by content hash."""

    def correct(self, stop: int) -> list[bool]: ...


@dataclass
class Readiness:
    """The screen and the confirmations of one run; train() calls look() at each checkpoint."""

    gate: Gate
    record: GateRecord
    items: list[ScoringItem]  # the gate set
    old: OldService | None  # the old service on the gate set (paired gates)
    pad_id: int
    eval_batch_size: int = 16
    flips: list[float] = field(default_factory=list)

    @property
    def looks_left(self) -> int:
        return self.record.looks_planned - len(self.record.looks)

    def bar_at(self, progress: float) -> float:
        """The screen's bar after this fraction of the training budget (0 at step 0, 1 at its end)."""
        start, end = self.record.screen_bar, self.record.screen_bar_end
        return start if end is None else start + (end - start) * min(max(progress, 0.0), 1.0)

    def spec(self) -> tests.TestSpec:
        alpha, chunk = self.record.alpha_per_look, self.record.chunk
        if self.gate.absolute is not None:
            return tests.absolute_spec(threshold=self.gate.absolute, alpha=alpha, chunk=chunk)
        return tests.paired_spec(margin=self.gate.margin, alpha=alpha, chunk=chunk, futility=self.record.futility)

    def confirm(self, model: torch.nn.Module, step: int, screen_accuracy: float, bar: float | None = None) -> bool:
        """One look: score gate chunks until the test settles; True when it publishes."""
        spec, n = self.spec(), len(self.items)
        x: list[float] = []
        verdict = 0
        while verdict == 0:
            chunk = self.items[len(x) : len(x) + spec.chunk]
            correct = evaluate(model, chunk, self.pad_id, self.eval_batch_size).correct
            start = len(x)
            if self.old is None:
                x += [float(c) for c in correct]
            else:  # the old service's scores for this chunk only: a look that settles early scores no more of it
                x += [float(c) - float(o) for c, o in zip(correct, self.old.correct(start + len(chunk))[start:],
                                                           strict=True)]
            verdict = int(tests.decide(np.array(x), spec, n)[0])
        lower, upper = tests.bounds(np.array(x), spec)
        if self.old is not None:
            self.flips.extend(abs(v) for v in x)
            self.record.measured_discordance = float(np.mean(self.flips))
        self.record.looks.append(Look(step=step, screen_accuracy=screen_accuracy, bar=bar, examples=len(x),
                                      estimate=float(np.mean(x)), lower=lower, upper=upper,
                                      verdict="publish" if verdict == 1 else "reject"))
        return verdict == 1
