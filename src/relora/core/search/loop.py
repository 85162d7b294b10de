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

from relora.core.config import SearchConfig
from relora.core.search.gp import ei_negligible, initial_design, propose_next
from relora.core.search.probes import Probe, best_probe
from relora.core.search.store import ProbeStore, exclusive

Objective = Callable[[float, float, int], float]  # (alpha, beta, n_examples) -> loss


@dataclass
class SearchResult:
    explored: list[Probe]
    rescored: list[Probe] = field(default_factory=list)
    stopped_early: bool = False  # EI fell below the tolerance before the trial budget
    stop_s: float = 0.0  # time of the proposal that decided to stop

    @property
    def probes(self) -> list[Probe]:
        return self.explored + self.rescored

    @property
    def best(self) -> Probe:
        """Eq. 9: the best observed pair, judged on all of D_val when any point was re-scored."""
        return best_probe(self.rescored or self.explored)

    @property
    def seconds(self) -> float:
        return self.stop_s + sum(p.propose_s + p.eval_s for p in self.probes)

    @property
    def examples_scored(self) -> int:
        return sum(p.n_examples for p in self.probes)


def grid_points(cfg: SearchConfig) -> list[tuple[float, float]]:
    n = cfg.grid_size
    alphas = torch.linspace(*cfg.alpha_bounds, n, dtype=torch.float64)
    betas = torch.linspace(*cfg.beta_bounds, n, dtype=torch.float64)
    return [(float(a), float(b)) for a in alphas for b in betas]


def screen_size(cfg: SearchConfig, n_val: int, kind: str) -> int:
    """Examples each exploring probe scores: a fraction of D_val for BO, all of it for the grid baseline."""
    return n_val if kind == "grid" else max(1, min(n_val, round(cfg.screen_fraction * n_val)))


def run_search(
    objective: Objective,
    cfg: SearchConfig,
    seed: int,
    n_val: int,
    kind: str = "bo",
    store_path: Path | None = None,
    progress: bool = True,
    known: list[tuple[float, float]] | None = None,
) -> SearchResult:
    """Explore up to T probes (BO) or the full grid, then re-score the best few on all of D_val.
    known: good points to try right after PortLLM's (earlier searches' best, the revert point)."""
    with exclusive(store_path):
        return _search(objective, cfg, seed, n_val, kind, store_path, progress, known)


def _search(objective: Objective, cfg: SearchConfig, seed: int, n_val: int, kind: str, store_path: Path | None,
            progress: bool, known: list[tuple[float, float]] | None = None) -> SearchResult:
    store = ProbeStore(store_path, cfg)
    history = store.completed()
    result = SearchResult([p for p in history if p.stage == "explore"], [p for p in history if p.stage == "rescore"])
    n_screen = screen_size(cfg, n_val, kind)
    planned = grid_points(cfg) if kind == "grid" else initial_design(cfg, seed, known)
    total = len(planned) if kind == "grid" else cfg.trials
    bar = tqdm(total=total, initial=len(result.explored), desc=f"search ({kind})", disable=not progress, leave=False)
    explored = result.explored
    while len(explored) < total and not result.rescored:  # a re-score in the store means exploring ended
        proposal = None if len(explored) < len(planned) else propose_next(explored, cfg, seed)
        if proposal is not None and ei_negligible(proposal, explored, cfg):
            result.stopped_early, result.stop_s = True, proposal.seconds
            break
        a, b = planned[len(explored)] if proposal is None else (proposal.alpha, proposal.beta)
        explored.append(store.record(a, b, n_screen, lambda a=a, b=b: objective(a, b, n_screen), proposal=proposal))
        bar.update(1)
        bar.set_postfix(best=f"{min(p.val_loss for p in explored):.4f}")
    bar.close()
    if n_screen < n_val:
        done = {(p.alpha, p.beta) for p in result.rescored}
        for p in sorted(explored, key=lambda p: p.val_loss)[: cfg.rescore_top]:
            if (p.alpha, p.beta) not in done:
                result.rescored.append(store.record(p.alpha, p.beta, n_val, lambda p=p: objective(p.alpha, p.beta, n_val),
                                                    stage="rescore"))
    return result


