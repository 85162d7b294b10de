"""The search over the fusion coefficients (alpha, beta): BO numerics, the probe store, the loop."""

from relora.core.method.search.gp import fit_gp, initial_design, propose_next
from relora.core.method.search.loop import Objective, SearchPlan, SearchResult, grid_points, run_search, screen_size
from relora.core.method.measures import Probe, Proposal, best_probe
from relora.core.method.search.store import ProbeStore

__all__ = ["Objective", "Probe", "ProbeStore", "Proposal", "SearchPlan", "SearchResult", "best_probe", "fit_gp", "grid_points",
           "initial_design", "propose_next", "run_search", "screen_size"]
