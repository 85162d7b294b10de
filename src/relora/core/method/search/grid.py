"""The grid baseline: every point of a grid_size x grid_size grid over the (alpha, beta) box, each scored on all
of D_val (no screening, no early stop, no known points)."""

from __future__ import annotations

from relora.core.model.loaded import InitContext
from relora.core.method.search.loop import Objective, SearchPlan, SearchResult, run_search
from relora.core.method.search.strategy import FusedFrom, SearchStrategy, Starts


class GridSearch(SearchStrategy):
    name = "grid"

    def run(self, ctx: InitContext, objective: Objective, fused: FusedFrom, starts: Starts) -> SearchResult:
        cfg = ctx.cfg
        return run_search(objective, cfg.search, SearchPlan(seed=cfg.seed, n_val=len(ctx.loaded.val), kind=self.name,
                                                            store_path=starts.store, progress=ctx.progress,
                                                            known=starts.known, ready_at=starts.ready_at))
