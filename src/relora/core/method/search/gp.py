"""The BO numerics (BoTorch): the initial design, the GP surrogate, and Expected Improvement.

Pure functions of (history, config, seed), so the same seed gives the same
probes whether or not a search was resumed.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from relora.core.model.config import SearchConfig
from relora.core.method.measures import GpState, Probe, Proposal


def bounds_tensor(cfg: SearchConfig) -> torch.Tensor:
    return torch.tensor([[cfg.alpha_bounds[0], cfg.beta_bounds[0]], [cfg.alpha_bounds[1], cfg.beta_bounds[1]]],
                        dtype=torch.float64)


def initial_design(cfg: SearchConfig, seed: int, known: list[tuple[float, float]] | None = None
                   ) -> list[tuple[float, float]]:
    """The PortLLM point (0, 1), then any known good points, clipped into the box, then scrambled
    Sobol points up to n_init."""
    from torch.quasirandom import SobolEngine

    b = bounds_tensor(cfg)
    firsts: list[tuple[float, float]] = []
    for point in [(0.0, 1.0), *(known or [])]:
        clipped = tuple(float(v) for v in torch.tensor(point, dtype=torch.float64).clamp(b[0], b[1]))
        if clipped not in firsts:
            firsts.append(clipped)  # type: ignore[arg-type]
    n_more = max(min(cfg.n_init, cfg.trials) - len(firsts), 0)
    if n_more == 0:  # SobolEngine cannot draw zero points
        return firsts[: cfg.trials]
    unit = SobolEngine(2, scramble=True, seed=seed).draw(n_more, dtype=torch.float64)
    points = b[0] + unit * (b[1] - b[0])
    return firsts + [(float(a), float(c)) for a, c in points]


def observations(history: list[Probe]) -> tuple[torch.Tensor, torch.Tensor]:
    """The probes as the GP's training data: X (n, 2) of (alpha, beta) and f (n, 1) = -L_val."""
    X = torch.tensor([[p.alpha, p.beta] for p in history], dtype=torch.float64)
    return X, -torch.tensor([[p.val_loss] for p in history], dtype=torch.float64)


def fit_gp(X: torch.Tensor, f: torch.Tensor, bounds: torch.Tensor, warm: GpState | None = None) -> Any:
    """GP surrogate of f = -L_val at X (Eq. 8, 10-14) in the box `bounds` (2, d): RBF kernel, hyperparameters by
    marginal likelihood.

    Starting from the previous iteration's hyperparameters (warm) makes the fit
    converge in a few L-BFGS steps instead of a hundred."""
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from gpytorch.kernels import RBFKernel, ScaleKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood

    gp = SingleTaskGP(X, f, covar_module=ScaleKernel(RBFKernel()),
                      input_transform=Normalize(d=X.shape[-1], bounds=bounds), outcome_transform=Standardize(m=1))
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
        gp = fit_gp(*observations(history), b, warm)
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


