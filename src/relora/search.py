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

import fcntl
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from tqdm.auto import tqdm

from relora.config import SearchConfig

Objective = Callable[[float, float, int], float]  # (alpha, beta, n_examples) -> loss
GpState = tuple[float, float, float]  # (outputscale, lengthscale, noise)
optuna.logging.set_verbosity(logging.WARNING)


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Proposal:
    alpha: float
    beta: float
    log_ei: float
    gp_state: GpState
    seconds: float


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


def bounds_tensor(cfg: SearchConfig) -> torch.Tensor:
    return torch.tensor([[cfg.alpha_bounds[0], cfg.beta_bounds[0]], [cfg.alpha_bounds[1], cfg.beta_bounds[1]]],
                        dtype=torch.float64)


def initial_design(cfg: SearchConfig, seed: int) -> list[tuple[float, float]]:
    """The PortLLM point (0, 1), clipped into the box, then scrambled Sobol points."""
    from torch.quasirandom import SobolEngine

    b = bounds_tensor(cfg)
    portllm = tuple(float(v) for v in torch.tensor([0.0, 1.0], dtype=torch.float64).clamp(b[0], b[1]))
    n_more = max(min(cfg.n_init, cfg.trials) - 1, 0)
    unit = SobolEngine(2, scramble=True, seed=seed).draw(n_more, dtype=torch.float64)
    points = b[0] + unit * (b[1] - b[0])
    return [portllm] + [(float(a), float(c)) for a, c in points]


def fit_gp(history: list[Probe], cfg: SearchConfig, warm: GpState | None = None) -> Any:
    """GP surrogate of f = -L_val (Eq. 8, 10-14): RBF kernel, hyperparameters by marginal likelihood.

    Starting from the previous iteration's hyperparameters (warm) makes the fit
    converge in a few L-BFGS steps instead of a hundred."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from gpytorch.kernels import RBFKernel, ScaleKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood

    X = torch.tensor([[p.alpha, p.beta] for p in history], dtype=torch.float64)
    f = -torch.tensor([[p.val_loss] for p in history], dtype=torch.float64)
    gp = SingleTaskGP(X, f, covar_module=ScaleKernel(RBFKernel()),
                      input_transform=Normalize(d=2, bounds=bounds_tensor(cfg)), outcome_transform=Standardize(m=1))
    if warm is not None:
        gp.covar_module.outputscale, gp.covar_module.base_kernel.lengthscale, gp.likelihood.noise = warm
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


def gp_state(gp: Any) -> GpState:
    with torch.no_grad():
        return (float(gp.covar_module.outputscale), float(gp.covar_module.base_kernel.lengthscale),
                float(gp.likelihood.noise))


def propose_next(history: list[Probe], cfg: SearchConfig, seed: int) -> Proposal:
    """argmax EI (Eq. 15-17) under the fitted GP.

    The box is 2-D, so one batched evaluation of EI on raw_samples Sobol points
    finds the basin and L-BFGS polishes the best num_restarts of them."""
    from botorch.acquisition.analytic import LogExpectedImprovement
    from botorch.optim import optimize_acqf
    from torch.quasirandom import SobolEngine

    start = time.perf_counter()
    b = bounds_tensor(cfg)
    f_best = -min(p.val_loss for p in history)
    warm = next((p.gp_state for p in reversed(history) if p.gp_state is not None), None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 10_007 + len(history))
        gp = fit_gp(history, cfg, warm)
        # EI with best_f = f+ + xi is Eq. 15's (mu - f+ - xi) Phi(Z) + sigma phi(Z); its log
        # has the same argmax (Eq. 17) and does not underflow to 0 far from the incumbent.
        acq = LogExpectedImprovement(gp, best_f=f_best + cfg.xi)
        unit = SobolEngine(2, scramble=True, seed=seed * 7_919 + len(history)).draw(cfg.raw_samples, dtype=torch.float64)
        candidates = (b[0] + unit * (b[1] - b[0]))[:, None, :]
        with torch.no_grad():
            top = acq(candidates).topk(min(cfg.num_restarts, cfg.raw_samples)).indices
        x, value = optimize_acqf(acq, bounds=b, q=1, num_restarts=len(top), batch_initial_conditions=candidates[top])
    return Proposal(float(x[0, 0]), float(x[0, 1]), float(value), gp_state(gp), time.perf_counter() - start)


def ei_negligible(proposal: Proposal, history: list[Probe], cfg: SearchConfig) -> bool:
    """Early stop: the best expected improvement is below ei_stop standard deviations of the losses seen."""
    if cfg.ei_stop <= 0 or len(history) < 2:
        return False
    losses = torch.tensor([p.val_loss for p in history], dtype=torch.float64)
    return math.exp(proposal.log_ei) < cfg.ei_stop * float(losses.std())


def grid_points(cfg: SearchConfig) -> list[tuple[float, float]]:
    n = cfg.grid_size
    alphas = torch.linspace(*cfg.alpha_bounds, n, dtype=torch.float64)
    betas = torch.linspace(*cfg.beta_bounds, n, dtype=torch.float64)
    return [(float(a), float(b)) for a in alphas for b in betas]


def screen_size(cfg: SearchConfig, n_val: int, kind: str) -> int:
    """Examples each exploring probe scores: a fraction of D_val for BO, all of it for the grid baseline."""
    return n_val if kind == "grid" else max(1, min(n_val, round(cfg.screen_fraction * n_val)))


class ProbeStore:
    """Completed probes in an Optuna study; in memory when no path is given."""

    def __init__(self, path: Path | None, cfg: SearchConfig) -> None:
        storage = f"sqlite:///{path}" if path is not None else None
        self.study = optuna.create_study(study_name="relora-search", storage=storage,
                                         direction="minimize", load_if_exists=True)
        self.dists = {
            "alpha": optuna.distributions.FloatDistribution(*cfg.alpha_bounds),
            "beta": optuna.distributions.FloatDistribution(*cfg.beta_bounds),
        }

    def completed(self) -> list[Probe]:
        done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        probes = []
        for t in done:
            attrs = dict(t.user_attrs)
            if attrs.get("gp_state") is not None:
                attrs["gp_state"] = tuple(attrs["gp_state"])
            probes.append(Probe(t.params["alpha"], t.params["beta"], float(t.value), **attrs))
        return probes

    def record(self, alpha: float, beta: float, n: int, run: Callable[[], float], stage: str = "explore",
               proposal: Proposal | None = None) -> Probe:
        self.study.enqueue_trial({"alpha": alpha, "beta": beta})
        trial = self.study.ask(self.dists)
        start = time.perf_counter()
        try:
            loss = run()
        except BaseException:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        probe = Probe(alpha, beta, loss, proposal.seconds if proposal else 0.0, time.perf_counter() - start, n,
                      stage, proposal.log_ei if proposal else None, proposal.gp_state if proposal else None)
        for key, value in probe.as_dict().items():
            if key not in ("alpha", "beta", "val_loss"):
                trial.set_user_attr(key, value)
        self.study.tell(trial, loss)
        return probe


@contextmanager
def exclusive(store_path: Path | None) -> Iterator[None]:
    """One search per store at a time, across processes: a second rollout worker with the
    same inputs waits, then finds the finished history and probes nothing."""
    if store_path is None:
        yield
        return
    with open(store_path.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_search(
    objective: Objective,
    cfg: SearchConfig,
    seed: int,
    n_val: int,
    kind: str = "bo",
    store_path: Path | None = None,
    progress: bool = True,
) -> SearchResult:
    """Explore up to T probes (BO) or the full grid, then re-score the best few on all of D_val."""
    with exclusive(store_path):
        return _search(objective, cfg, seed, n_val, kind, store_path, progress)


def _search(objective: Objective, cfg: SearchConfig, seed: int, n_val: int, kind: str, store_path: Path | None,
            progress: bool) -> SearchResult:
    store = ProbeStore(store_path, cfg)
    history = store.completed()
    result = SearchResult([p for p in history if p.stage == "explore"], [p for p in history if p.stage == "rescore"])
    n_screen = screen_size(cfg, n_val, kind)
    planned = grid_points(cfg) if kind == "grid" else initial_design(cfg, seed)
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


def best_probe(probes: list[Probe]) -> Probe:
    """Eq. 9: the best observed pair (lowest validation loss)."""
    return min(probes, key=lambda p: p.val_loss)
