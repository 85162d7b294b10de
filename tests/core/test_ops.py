"""The pure math against its equations (Eq. 7, 18-19, 22) and numpy's SVD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from relora.core.math.ops import (LowRank, anchor_penalty, fuse_factors, project_delta, scheduled_lambda,
                        scheduled_lr)


def _low_rank_plus_noise(d: int, k: int, rank: int, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    spectrum = torch.logspace(0, -1, rank, dtype=torch.float64)
    u = torch.linalg.qr(torch.randn(d, rank, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(k, rank, generator=g, dtype=torch.float64))[0]
    return (u * spectrum) @ v.T + noise * torch.randn(d, k, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_projection_matches_numpy_truncated_svd(method: str) -> None:
    delta = _low_rank_plus_noise(48, 32, 12, 1e-3, seed=0)
    r = 6
    U, S, Vt = np.linalg.svd(delta.numpy(), full_matrices=False)
    best = (U[:, :r] * S[:r]) @ Vt[:r]
    factors, dropped = project_delta(delta, r, method=method, seed=3)
    got = factors.dense().numpy()
    tol = 1e-10 if method == "exact" else 1e-3
    assert np.linalg.norm(got - best) / np.linalg.norm(best) < tol
    expected_dropped = float((S[r:] ** 2).sum() / (S**2).sum())
    assert dropped == pytest.approx(expected_dropped, rel=1e-2 if method == "randomized" else 1e-9)
    assert factors.B.shape == (48, r) and factors.A.shape == (r, 32)


def test_projection_rejects_rank_above_min_dim() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        project_delta(torch.zeros(4, 3), 4)


def test_fusion_is_exact_when_rank_reaches_sum_of_ranks() -> None:
    g = torch.Generator().manual_seed(0)
    proj = LowRank(B=torch.randn(40, 3, generator=g), A=torch.randn(3, 30, generator=g))
    old = LowRank(B=torch.randn(40, 3, generator=g), A=torch.randn(3, 30, generator=g))
    alpha, beta, s_old, s_new = 0.6, 1.9, 2.0, 0.5
    target = alpha * proj.dense() + beta * s_old * old.dense()  # Eq. 7
    fused, dropped = fuse_factors(alpha, proj, beta, old, r=6, scalings=(s_old, s_new))
    assert torch.allclose(s_new * fused.dense(), target, atol=1e-4)
    assert dropped == pytest.approx(0.0, abs=1e-10)


def test_fusion_truncation_is_the_best_rank_r_approximation() -> None:
    g = torch.Generator().manual_seed(1)
    proj = LowRank(B=torch.randn(40, 4, generator=g, dtype=torch.float64), A=torch.randn(4, 30, generator=g, dtype=torch.float64))
    old = LowRank(B=torch.randn(40, 4, generator=g, dtype=torch.float64), A=torch.randn(4, 30, generator=g, dtype=torch.float64))
    target = 0.3 * proj.dense() + 1.2 * old.dense()
    U, S, Vt = np.linalg.svd(target.numpy())
    best = (U[:, :4] * S[:4]) @ Vt[:4]
    fused, dropped = fuse_factors(0.3, proj, 1.2, old, r=4, scalings=(1.0, 1.0))
    assert np.allclose(fused.dense().numpy(), best, atol=1e-9)
    assert dropped == pytest.approx(float((S[4:] ** 2).sum() / (S**2).sum()), rel=1e-9)


def test_fusion_pads_to_rank_when_sum_has_lower_rank() -> None:
    old = LowRank(B=torch.ones(8, 2), A=torch.ones(2, 5))  # rank 1
    empty = LowRank(B=torch.zeros(8, 0), A=torch.zeros(0, 5))
    fused, _ = fuse_factors(0.0, empty, 1.0, old, r=4, scalings=(1.0, 1.0))
    assert fused.B.shape == (8, 4) and fused.A.shape == (4, 5)
    assert torch.allclose(fused.dense(), old.dense(), atol=1e-5)


def test_anchor_gradient_is_eq19() -> None:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 5, generator=g, requires_grad=True)
    B = torch.randn(7, 3, generator=g, requires_grad=True)
    A0, B0 = torch.randn(3, 5, generator=g), torch.randn(7, 3, generator=g)
    lam = 1e-3
    penalty = anchor_penalty([A, B], [A0, B0], lam)
    expected = lam / 2 * ((A - A0).pow(2).sum() + (B - B0).pow(2).sum())  # Eq. 18's anchor term
    assert torch.allclose(penalty, expected)
    penalty.backward()
    assert torch.allclose(A.grad, lam * (A - A0).detach())  # Eq. 19
    assert torch.allclose(B.grad, lam * (B - B0).detach())


def test_schedule_is_eq22() -> None:
    e1, total, lr1, lr_min = 10, 30, 5e-4, 1e-5
    assert all(scheduled_lr(t, e1, total, lr1, lr_min) == lr1 for t in range(e1))
    for t in range(e1, total):
        want = lr_min + 0.5 * (lr1 - lr_min) * (1 + math.cos((t - e1) * math.pi / (total - e1)))
        assert scheduled_lr(t, e1, total, lr1, lr_min) == pytest.approx(want)
    assert scheduled_lr(total, e1, total, lr1, lr_min) == pytest.approx(lr_min)
    lrs = [scheduled_lr(t, e1, total, lr1, lr_min) for t in range(e1, total)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert [scheduled_lambda(t, e1, 1e-3, 1e-4) for t in (0, e1 - 1, e1, total)] == [1e-3, 1e-3, 1e-4, 1e-4]
