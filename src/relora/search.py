"""Search over the fusion coefficients (alpha, beta): BoTorch BO or a grid.

The objective is a black box (alpha, beta) -> validation loss, minimised.
Probe history lives in an Optuna study (SQLite), so a killed search resumes
where it stopped; the next point is a pure function of (history, seed, index),
so the same seed gives the same probes whether or not the run was resumed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from tqdm.auto import tqdm

from relora.config import SearchConfig

Objective = Callable[[float, float], float]
optuna.logging.set_verbosity(logging.WARNING)


@dataclass(frozen=True)
class Probe:
    alpha: float
    beta: float
    val_loss: float
    propose_s: float = 0.0  # GP fit + acquisition time that chose this point
    eval_s: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


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


def fit_gp(history: list[Probe], cfg: SearchConfig) -> Any:
    """GP surrogate of f = -L_val (Eq. 8, 10-14): RBF kernel, hyperparameters by marginal likelihood."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from gpytorch.kernels import RBFKernel, ScaleKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood

    X = torch.tensor([[p.alpha, p.beta] for p in history], dtype=torch.float64)
    f = -torch.tensor([[p.val_loss] for p in history], dtype=torch.float64)
    gp = SingleTaskGP(X, f, covar_module=ScaleKernel(RBFKernel()),
                      input_transform=Normalize(d=2, bounds=bounds_tensor(cfg)), outcome_transform=Standardize(m=1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return gp


def propose_next(history: list[Probe], cfg: SearchConfig, seed: int) -> tuple[float, float]:
    """argmax EI (Eq. 15-17) under the fitted GP."""
    from botorch.acquisition.analytic import LogExpectedImprovement
    from botorch.optim import optimize_acqf

    b = bounds_tensor(cfg)
    f_best = -min(p.val_loss for p in history)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 10_007 + len(history))
        gp = fit_gp(history, cfg)
        # EI with best_f = f+ + xi is Eq. 15's (mu - f+ - xi) Phi(Z) + sigma phi(Z); its log
        # has the same argmax (Eq. 17) and does not underflow to 0 far from the incumbent.
        acq = LogExpectedImprovement(gp, best_f=f_best + cfg.xi)
        x, _ = optimize_acqf(acq, bounds=b, q=1, num_restarts=cfg.num_restarts, raw_samples=cfg.raw_samples)
    return float(x[0, 0]), float(x[0, 1])


def grid_points(cfg: SearchConfig) -> list[tuple[float, float]]:
    n = cfg.grid_size
    alphas = torch.linspace(*cfg.alpha_bounds, n, dtype=torch.float64)
    betas = torch.linspace(*cfg.beta_bounds, n, dtype=torch.float64)
    return [(float(a), float(b)) for a in alphas for b in betas]


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
        return [Probe(t.params["alpha"], t.params["beta"], float(t.value),
                      t.user_attrs.get("propose_s", 0.0), t.user_attrs.get("eval_s", 0.0)) for t in done]

    def record(self, alpha: float, beta: float, run: Callable[[], float], propose_s: float) -> Probe:
        self.study.enqueue_trial({"alpha": alpha, "beta": beta})
        trial = self.study.ask(self.dists)
        start = time.perf_counter()
        try:
            loss = run()
        except BaseException:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        eval_s = time.perf_counter() - start
        trial.set_user_attr("propose_s", propose_s)
        trial.set_user_attr("eval_s", eval_s)
        self.study.tell(trial, loss)
        return Probe(alpha, beta, loss, propose_s, eval_s)


def run_search(
    objective: Objective,
    cfg: SearchConfig,
    seed: int,
    kind: str = "bo",
    store_path: Path | None = None,
    progress: bool = True,
) -> list[Probe]:
    """Evaluate T probes (BO) or the full grid; returns every probe in order."""
    store = ProbeStore(store_path, cfg)
    history = store.completed()
    if kind == "grid":
        planned: list[tuple[float, float]] | None = grid_points(cfg)
        total = len(planned)
    else:
        planned = initial_design(cfg, seed)
        total = cfg.trials
    bar = tqdm(total=total, initial=len(history), desc=f"search ({kind})", disable=not progress, leave=False)
    while len(history) < total:
        start = time.perf_counter()
        i = len(history)
        a, b = planned[i] if i < len(planned) else propose_next(history, cfg, seed)
        propose_s = time.perf_counter() - start
        history.append(store.record(a, b, lambda a=a, b=b: objective(a, b), propose_s))
        bar.update(1)
        bar.set_postfix(best=f"{min(p.val_loss for p in history):.4f}")
    bar.close()
    return history


def best_probe(probes: list[Probe]) -> Probe:
    """Eq. 9: the best observed pair (lowest validation loss)."""
    return min(probes, key=lambda p: p.val_loss)
