"""The paper's search: BoTorch BO over one (alpha, beta), the GP and Expected Improvement of gp.py driven by the
shared probe loop (explore on a screening subset of D_val, stop when EI is negligible, re-score the best)."""

from __future__ import annotations

from relora.core.model.loaded import InitContext
from relora.core.method.search.loop import Objective, SearchPlan, SearchResult, run_search
from relora.core.method.search.strategy import FusedFrom, SearchStrategy, Starts


class BoSearch(SearchStrategy):
    name = "bo"

    def run(self, ctx: InitContext, objective: Objective, fused: FusedFrom, starts: Starts) -> SearchResult:
        cfg, known, search = ctx.cfg, starts.known, ctx.cfg.search
        if known is not None and len(known) > 1:  # earlier searches found the basin: a smaller budget
            search = search.model_copy(update={"trials": min(search.trials, search.seeded_trials)})
        return run_search(objective, search, SearchPlan(seed=cfg.seed, n_val=len(ctx.loaded.val), kind=self.name,
                                                        store_path=starts.store, progress=ctx.progress, known=known,
                                                        ready_at=starts.ready_at))
