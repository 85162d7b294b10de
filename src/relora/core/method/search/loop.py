"""Search over the fusion coefficients (alpha, beta): BoTorch BO or a grid.

The objective is a black box (alpha, beta, n) -> validation loss on the first n
examples of D_val, minimised. BO explores on a screening subset of D_val, stops
early once Expected Improvement is negligible, and re-scores its best few points
on all of D_val (multi-fidelity); the grid baseline always scores all of D_val.

Probe history lives in an Optuna study (SQLite), so a killed search resumes
where it stopped; the next point is a pure function of (history, seed), so the
same seed gives the same probes whether or not the run was resumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from relora.core.model.config import SearchConfig
from relora.core.method.search.gp import ei_negligible, initial_design, propose_next
from relora.core.method.measures import Probe, Score, best_probe
from relora.core.method.search.store import ProbeStore, exclusive

Objective = Callable[[float, float, int], Score]  # (alpha, beta, n_examples) -> loss or (loss, accuracy)


@dataclass
class SearchResult:
    explored: list[Probe]
    rescored: list[Probe] = field(default_factory=list)
    stopped_early: bool = False  # EI fell below the tolerance before the trial budget
    stop_s: float = 0.0  # time of the proposal that decided to stop
    ready: Probe | None = None  # a candidate already at the readiness threshold on all of D_val (stop-when-ready)
    chosen: Probe | None = None  # a search that decides its own end point (the gradient's kept coefficients)
    groups: dict[str, tuple[float, float]] | None = None  # per-group (alpha, beta) the end point uses, if any
    per_module: dict[str, tuple[float, float]] | None = None  # the same, per adapted module
    train_examples: int = 0  # training examples through forward and backward (the gradient steps)
    train_tokens: int = 0  # their tokens

    @property
    def probes(self) -> list[Probe]:
        return self.explored + self.rescored

    @property
    def best(self) -> Probe:
        """Eq. 9: the best observed pair, judged on all of D_val when any point was re-scored;
        with stop-when-ready, the first candidate that met the threshold."""
        return self.ready or self.chosen or best_probe(self.rescored or self.explored)

    @property
    def seconds(self) -> float:
        return self.stop_s + sum(p.propose_s + p.eval_s for p in self.probes)

    @property
    def examples_scored(self) -> int:
        return sum(p.n_examples for p in self.probes) + self.train_examples


def grid_points(cfg: SearchConfig) -> list[tuple[float, float]]:
    n = cfg.grid_size
    alphas = torch.linspace(*cfg.alpha_bounds, n, dtype=torch.float64)
    betas = torch.linspace(*cfg.beta_bounds, n, dtype=torch.float64)
    return [(float(a), float(b)) for a in alphas for b in betas]


def screen_size(cfg: SearchConfig, n_val: int, kind: str) -> int:
    """Examples each exploring probe scores: a fraction of D_val for BO, all of it for the grid baseline."""
    return n_val if kind == "grid" else max(1, min(n_val, round(cfg.screen_fraction * n_val)))


@dataclass(frozen=True, kw_only=True)
class SearchPlan:
    """How one search runs: its seed and D_val size, BO or the grid, where its probes are kept, the known
    points it tries first, and the readiness bar that ends it early."""
    seed: int
    n_val: int
    kind: str = "bo"
    store_path: Path | None = None
    progress: bool = True
    known: list[tuple[float, float]] | None = None  # good points to try right after PortLLM's
    ready_at: float | None = None  # stop-when-ready's bar on all of D_val


def run_search(objective: Objective, cfg: SearchConfig, plan: SearchPlan) -> SearchResult:
    """Explore up to T probes (BO) or the full grid, then re-score the best few on all of D_val.
    plan.known: good points to try right after PortLLM's (earlier searches' best, the revert point).
    plan.ready_at (stop-when-ready): once the initial design is scored, its best point is re-scored on all
    of D_val; the first re-scored point whose accuracy reaches ready_at ends the search."""
    with exclusive(plan.store_path):
        return _search(objective, cfg, plan)


def _is_ready(probe: Probe, ready_at: float | None) -> bool:
    return ready_at is not None and probe.val_accuracy is not None and probe.val_accuracy >= ready_at


def _search(objective: Objective, cfg: SearchConfig, plan: SearchPlan) -> SearchResult:
    seed, n_val, kind, ready_at = plan.seed, plan.n_val, plan.kind, plan.ready_at
    store = ProbeStore(plan.store_path, cfg)
    history = store.completed()
    result = SearchResult([p for p in history if p.stage == "explore"], [p for p in history if p.stage == "rescore"])
    n_screen = screen_size(cfg, n_val, kind)
    full = n_screen >= n_val  # explored probes already score all of D_val

    def rescore(p: Probe) -> bool:
        """Score p on all of D_val (once); True when it is ready."""
        done = {(q.alpha, q.beta): q for q in result.rescored}
        if (p.alpha, p.beta) not in done:
            result.rescored.append(store.record(p.alpha, p.beta, n_val, lambda: objective(p.alpha, p.beta, n_val),
                                                stage="rescore"))
        scored = done.get((p.alpha, p.beta), result.rescored[-1])
        if _is_ready(scored, ready_at):
            result.ready = scored
        return result.ready is not None

    result.ready = next((p for p in result.probes if (full or p.stage == "rescore") and _is_ready(p, ready_at)), None)
    planned = grid_points(cfg) if kind == "grid" else initial_design(cfg, seed, plan.known)
    total = len(planned) if kind == "grid" else cfg.trials
    bar = tqdm(total=total, initial=len(result.explored), desc=f"search ({kind})", disable=not plan.progress,
               leave=False)
    explored = result.explored
    # A re-score in the store means exploring ended, unless it was stop-when-ready's check of the design
    while len(explored) < total and result.ready is None and (not result.rescored or ready_at is not None):
        if ready_at is not None and not full and len(explored) == len(planned) and rescore(best_probe(explored)):
            break
        proposal = None if len(explored) < len(planned) else propose_next(explored, cfg, seed)
        if proposal is not None and ei_negligible(proposal, explored, cfg):
            result.stopped_early, result.stop_s = True, proposal.seconds
            break
        a, b = planned[len(explored)] if proposal is None else (proposal.alpha, proposal.beta)
        explored.append(store.record(a, b, n_screen, lambda a=a, b=b: objective(a, b, n_screen), proposal=proposal))
        if full and _is_ready(explored[-1], ready_at):
            result.ready = explored[-1]
        bar.update(1)
        bar.set_postfix(best=f"{min(p.val_loss for p in explored):.4f}")
    bar.close()
    if not full and result.ready is None:
        for p in sorted(explored, key=lambda p: p.val_loss)[: cfg.rescore_top]:
            if rescore(p):
                break
    return result


