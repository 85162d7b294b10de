"""The grid baseline: every point of a grid_size x grid_size grid over the (alpha, beta) box, each scored on all
of D_val (no screening, no early stop, no known points)."""

from __future__ import annotations

from relora.core.model.loaded import InitContext
from relora.core.method.search.loop import Objective, SearchResult, run_search
from relora.core.method.search.strategy import FusedFrom, SearchStrategy, Starts, plan_for


class GridSearch(SearchStrategy):
    name = "grid"

    def run(self, ctx: InitContext, objective: Objective, fused: FusedFrom, starts: Starts) -> SearchResult:
        return run_search(objective, ctx.cfg.search, plan_for(ctx, starts, self.name))
