"""The paper's search: BoTorch BO over one (alpha, beta), the GP and Expected Improvement of gp.py driven by the
shared probe loop (explore on a screening subset of D_val, stop when EI is negligible, re-score the best)."""

from __future__ import annotations

from relora.core.model.loaded import InitContext
from relora.core.method.search.loop import Objective, SearchResult, run_search
from relora.core.method.search.strategy import FusedFrom, SearchStrategy, Starts, plan_for


class BoSearch(SearchStrategy):
    name = "bo"

    def run(self, ctx: InitContext, objective: Objective, fused: FusedFrom, starts: Starts) -> SearchResult:
        known, search = starts.known, ctx.cfg.search
        if known is not None and len(known) > 1:  # earlier searches found the basin: a smaller budget
            search = search.model_copy(update={"trials": min(search.trials, search.seeded_trials)})
        return run_search(objective, search, plan_for(ctx, starts, self.name))
