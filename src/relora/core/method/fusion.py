"""Eq. 7 for every adapted module, and the base delta it fuses (Pi_r of Theta' - Theta, cached)."""

from __future__ import annotations

from relora.core.model.adapter import LoraAdapter
from relora.core.model.delta import DeltaProjection, SvdSpec, cache_key, project_base_delta
from relora.core.model.loaded import InitContext
from relora.core.math.ops import LowRank, fuse_factors, rebalance
from relora.core.model.weights import WeightReader


def fused_init(
    point: tuple[float, float], delta: DeltaProjection | None, old: LoraAdapter, spec: LoraAdapter,
    old_balance: bool = False, per_module: dict[str, tuple[float, float]] | None = None,
) -> tuple[dict[str, LowRank], float]:
    """Eq. 7 for every module at point = (alpha, beta), as rank-r factors; returns the max dropped energy. With
    old_balance, each module's factors take the old adapter's ||B|| / ||A|| (the product is unchanged).
    per_module: each module's own (alpha, beta), in place of the global pair."""
    factors, worst = {}, 0.0
    for module, old_lr in old.factors.items():
        d_lr = delta.factors[module] if delta else LowRank(old_lr.B[:, :0], old_lr.A[:0])
        a, b = per_module[module] if per_module else point
        fused, dropped = fuse_factors(a, d_lr, b, old_lr, r=spec.r, scalings=(old.scaling, spec.scaling))
        factors[module] = rebalance(fused, old_lr) if old_balance else fused
        worst = max(worst, dropped)
    return factors, worst


def project(ctx: InitContext) -> DeltaProjection:
    """Pi_r of the base delta for the adapter's modules, cached by both bases' content hashes."""
    cfg, loaded = ctx.cfg, ctx.loaded
    assert loaded.old_adapter is not None and loaded.old_dir is not None
    modules = loaded.old_adapter.modules
    svd = SvdSpec(r=loaded.spec.r, method=cfg.search.svd, seed=cfg.seed, device=ctx.device)
    key = cache_key(loaded.hashes["old_base"], loaded.hashes["new_base"], modules, svd)
    return project_base_delta(WeightReader(loaded.old_dir), WeightReader(loaded.new_dir), modules, svd,
                              cache_file=ctx.cache / "deltas" / f"{key}.safetensors", progress=ctx.progress)
