"""What a search strategy is: a named object that picks the fusion coefficients for one service.

Each strategy lives in a file of its own (bo.py, grid.py, per_group.py for the gradient) and is registered in
search/registry.py the way methods are in methods.py; SearchedFusion looks its strategy up by name and never
branches on it. Every strategy scores points through the same objective: Eq. 7's fusion at (alpha, beta),
scored on the first n examples of D_val.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relora.core.model.adapter import LoraAdapter
from relora.core.model.delta import DeltaProjection
from relora.core.model.loaded import InitContext
from relora.core.method.search.loop import Objective, SearchPlan, SearchResult

Coefficients = dict[str, tuple[float, float]]


@dataclass(frozen=True, kw_only=True)
class FusedFrom:
    """What every scored point is fused from: the base delta's projection and the old adapter."""
    delta: DeltaProjection
    old: LoraAdapter
    balanced: bool  # the fused factors take the old adapter's B/A balance


@dataclass(frozen=True, kw_only=True)
class Starts:
    """Where the search starts and when it ends: the known points and earlier searches' per-group coefficients,
    the screen bar that ends it early, its probe store, and whether it learns new coefficients at all."""
    known: list[tuple[float, float]] | None
    priors: list[Coefficients]
    ready_at: float | None = None
    store: Path | None = None
    learn: bool = True


class SearchStrategy:
    """One search: its name, and run(), which returns the probes it scored and the point it chose."""

    name: str = ""

    def run(self, ctx: InitContext, objective: Objective, fused: FusedFrom, starts: Starts) -> SearchResult:
        raise NotImplementedError


def plan_for(ctx: InitContext, starts: Starts, kind: str) -> SearchPlan:
    """The probe loop's plan for one service: its seed and D_val, the strategy's kind, and the starts' store,
    known points and readiness bar."""
    return SearchPlan(seed=ctx.cfg.seed, n_val=len(ctx.loaded.val), kind=kind, store_path=starts.store,
                      progress=ctx.progress, known=starts.known, ready_at=starts.ready_at)
