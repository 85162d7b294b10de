"""Pure tensor math of the paper: no I/O, no models, no global state.

Every function maps tensors to tensors and is tested against its equation in
arXiv 2606.02606 (Eq. 6-7 fusion, Eq. 18-19 anchor, Eq. 22 schedule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

SvdMethod = Literal["exact", "randomized"]


@dataclass(frozen=True)
class LowRank:
    """A rank-r matrix M = B @ A with B (d x r) and A (r x k), LoRA's layout."""

    B: torch.Tensor
    A: torch.Tensor

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def dense(self) -> torch.Tensor:
        return self.B @ self.A

    def to(self, device: torch.device | str) -> LowRank:
        return LowRank(B=self.B.to(device), A=self.A.to(device))


def lora_scaling(lora_alpha: float, r: int, use_rslora: bool) -> float:
    """PEFT's scaling of B@A: alpha/r, or alpha/sqrt(r) with rsLoRA."""
    return lora_alpha / (math.sqrt(r) if use_rslora else r)


def project_delta(
    delta: torch.Tensor,
    r: int,
    method: SvdMethod = "randomized",
    oversample: int = 8,
    power_iters: int = 4,
    seed: int = 0,
) -> tuple[LowRank, float]:
    """Pi_r(dW): the best rank-r approximation of a delta, as LoRA factors.

    Returns the factors (singular values split evenly between B and A) and the
    relative Frobenius energy that truncation drops (computed from ||dW||_F and
    the kept singular values, so it is exact for both methods).
    """
    d, k = delta.shape
    if r > min(d, k):
        raise ValueError(f"rank {r} exceeds min(d, k) = {min(d, k)}")
    work = delta.to(torch.float64) if delta.dtype != torch.float64 else delta
    if method == "exact" or r + oversample >= min(d, k):
        U, S, Vh = torch.linalg.svd(work, full_matrices=False)
        U, S, Vh = U[:, :r], S[:r], Vh[:r]
    else:
        # Randomized range finder (Halko et al.); seeded so probes are reproducible.
        with torch.random.fork_rng(devices=[work.device] if work.device.type == "cuda" else []):
            torch.manual_seed(seed)
            U, S, V = torch.svd_lowrank(work, q=r + oversample, niter=power_iters)
        U, S, Vh = U[:, :r], S[:r], V[:, :r].T
    total = float(work.pow(2).sum())
    kept = float(S.pow(2).sum())
    dropped = max(total - kept, 0.0) / total if total > 0 else 0.0
    root = S.sqrt()
    factors = LowRank(B=(U * root).to(delta.dtype), A=(root[:, None] * Vh).to(delta.dtype))
    return factors, dropped


def fuse_factors(alpha: float, delta_proj: LowRank, beta: float, old: LowRank, *, r: int,
                 scalings: tuple[float, float]) -> tuple[LowRank, float]:
    """Eq. 7 as rank-r LoRA factors: new_scaling * B A = best rank-r of
    alpha * Pi_r(dW) + beta * old_scaling * B_old A_old, with scalings = (old_scaling, new_scaling).

    Works on the stacked factors (QR of each side, then an SVD of the small
    core), so no d x k matrix is formed. Returns the factors and the relative
    energy the final truncation drops (0 when rank(sum) <= r).
    """
    old_scaling, new_scaling = scalings
    left = torch.cat([alpha * delta_proj.B, beta * old_scaling * old.B], dim=1).to(torch.float64)
    right = torch.cat([delta_proj.A, old.A], dim=0).to(torch.float64)
    q_left, r_left = torch.linalg.qr(left)
    q_right, r_right = torch.linalg.qr(right.T)
    U, S, Vh = torch.linalg.svd(r_left @ r_right.T)
    total = float(S.pow(2).sum())
    dropped = float(S[r:].pow(2).sum()) / total if total > 0 else 0.0
    keep = min(r, S.shape[0])
    root = (S[:keep] / new_scaling).sqrt()
    B = q_left @ (U[:, :keep] * root)
    A = (root[:, None] * Vh[:keep]) @ q_right.T
    if keep < r:  # pad with zero directions so the adapter keeps rank r's shape
        B = torch.cat([B, B.new_zeros(B.shape[0], r - keep)], dim=1)
        A = torch.cat([A, A.new_zeros(r - keep, A.shape[1])], dim=0)
    dtype = old.A.dtype
    return LowRank(B=B.to(dtype), A=A.to(dtype)), dropped


def rebalance(factors: LowRank, like: LowRank) -> LowRank:
    """The same product B A, with ||B||_F / ||A||_F set to like's. A factor split is a free choice
    for the product, but not for training: under Adam it sets the effective step size on B A."""
    b_norm, a_norm = float(factors.B.norm()), float(factors.A.norm())
    target = float(like.B.norm()) / max(float(like.A.norm()), 1e-30)
    if b_norm == 0.0 or a_norm == 0.0 or target == 0.0:
        return factors  # a zero factor (PEFT's B at init) has no ratio to copy
    c = (target * a_norm / b_norm) ** 0.5
    return LowRank(B=factors.B * c, A=factors.A / c)


def anchor_penalty(
    params: list[torch.Tensor], anchors: list[torch.Tensor], lam: float
) -> torch.Tensor:
    """The L2 anchor of Eq. 18/21: lam/2 * sum ||P - P_init||_F^2."""
    if not params:
        return torch.zeros(())
    total = sum((p - a).pow(2).sum() for p, a in zip(params, anchors, strict=True))
    return 0.5 * lam * total


@torch.no_grad()
def decoupled_anchor_step(params: list[torch.Tensor], anchors: list[torch.Tensor], rate: float) -> None:
    """P <- P - rate * (P - P_init), rate = lr_t * lambda_t: the anchor applied after the optimizer's step,
    the way AdamW decouples weight decay, so its pull is not rescaled by Adam's second moments."""
    for p, a in zip(params, anchors, strict=True):
        p.sub_(rate * (p - a))


def scheduled_lambda(step: int, e1: int, lambda1: float, lambda2: float) -> float:
    """Stage 1 (t < E1) anchors with lambda1, stage 2 with lambda2."""
    return lambda1 if step < e1 else lambda2


def scheduled_lr(step: int, e1: int, e_total: int, lr1: float, lr_min: float) -> float:
    """Eq. 22: constant eta1 in stage 1, cosine from eta1 to eta_min in stage 2."""
    if step < e1:
        return lr1
    span = max(e_total - e1, 1)
    progress = min(step - e1, span) / span
    return lr_min + 0.5 * (lr1 - lr_min) * (1.0 + math.cos(progress * math.pi))
