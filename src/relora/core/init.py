"""Init strategies: how each method sets the adapter's starting factors before training.

A method in the registry (relora.core.methods) names one of these; readapt calls it
and never branches on method names. Each strategy also declares its needs (the old
adapter, the old base) so config validation and input loading ask it, not a list.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict

from relora.core.adapter import LoraAdapter, set_factors
from relora.core.delta import DeltaProjection, cache_key, project_base_delta
from relora.core.device import model_device
from relora.core.ops import LowRank, fuse_factors, rebalance
from relora.core.scoring import evaluate
from relora.core.search import Probe, run_search
from relora.core.search.known import known_points, remember
from relora.core.weights import WeightReader

if TYPE_CHECKING:  # the config module validates method names against the registry, which imports this
    from relora.core.config import ReadaptConfig
    from relora.core.inputs import Loaded


class InitInfo(BaseModel):
    """What the init did; relora.json's RunRecord extends it."""

    model_config = ConfigDict(extra="forbid")

    alpha: float | None = None  # the init's fusion coefficients (None: no old adapter in the init)
    beta: float | None = None
    probes: list[Probe] = []
    search_s: float = 0.0  # charged search cost: delta projection + probes (as recorded, also when reused)
    search_wall_s: float | None = None  # what this process spent on it
    search_examples_scored: int | None = None
    search_stopped_early: bool | None = None
    fusion_dropped_energy: float | None = None
    delta_cached: bool | None = None
    delta_dropped_energy_mean: float | None = None
    delta_relative_norm_mean: float | None = None


@dataclass(frozen=True)
class InitContext:
    cfg: ReadaptConfig
    loaded: Loaded
    model: torch.nn.Module
    cache: Path
    progress: bool

    @property
    def device(self) -> torch.device:
        return model_device(self.model)


class InitStrategy:
    """A fresh LoRA with PEFT's default init (kaiming A, zero B), seeded. Subclasses say what else they need."""

    needs_adapter: bool = False  # reads the old adapter's factors
    needs_old_base: bool = False  # projects the base delta
    has_adapter: bool = True  # attaches, trains and saves a LoRA
    search: str | None = None

    def __call__(self, ctx: InitContext) -> InitInfo:
        return InitInfo()


class BaseOnly(InitStrategy):
    """The new base alone: no adapter is attached or saved."""

    has_adapter = False


class FreshLora(InitStrategy):
    """PEFT's default init."""


class OldAdapter(InitStrategy):
    """The old adapter as it is (PortLLM), re-factored only when the output shape differs."""

    needs_adapter = True

    def __call__(self, ctx: InitContext) -> InitInfo:
        old, spec = ctx.loaded.old_adapter, ctx.loaded.spec
        assert old is not None
        same = old.r == spec.r and old.scaling == spec.scaling
        set_factors(ctx.model, old.factors if same else fused_init(0.0, 1.0, None, old, spec)[0])
        return InitInfo(alpha=0.0, beta=1.0)


class SearchedFusion(InitStrategy):
    """Eq. 7's fusion alpha * Pi_r(dW) + beta * s * B A, with (alpha, beta) chosen by a search."""

    needs_adapter = True
    needs_old_base = True

    def __init__(self, search: Literal["bo", "grid"], design: Literal["paper", "known"] = "paper",
                 balance: Literal["even", "old"] = "even") -> None:
        """design known: the revert point and earlier searches' best points on this base pair follow
        PortLLM's in the initial design. balance old: each module's init keeps the old adapter's
        ||B|| / ||A|| instead of splitting sqrt(S) evenly (under Adam the split sets the step size on B A)."""
        self.search, self.design, self.balance = search, design, balance

    @property
    def kind(self) -> str:
        """What the probe store is keyed by: methods whose searches probe the same thing share them."""
        return self.search if self.design == "paper" and self.balance == "even" else \
            f"{self.search}-{self.design}-{self.balance}"

    def __call__(self, ctx: InitContext) -> InitInfo:
        cfg, loaded, model = ctx.cfg, ctx.loaded, ctx.model
        old = loaded.old_adapter
        assert old is not None
        start = time.perf_counter()
        delta = project(ctx)
        delta.factors = {m: lr.to(ctx.device) for m, lr in delta.factors.items()}  # the fusion runs there too
        old = replace(old, factors={m: lr.to(ctx.device) for m, lr in old.factors.items()})
        balanced = self.balance == "old"

        def objective(a: float, b: float, n: int) -> float:
            set_factors(model, fused_init(a, b, delta, old, loaded.spec, balanced)[0])
            # D_val is a seeded random sample, so its first n examples are a random screening subset
            return evaluate(model, loaded.val[:n], loaded.pad_id, cfg.training.eval_batch_size).loss

        pair = (loaded.hashes["old_base"], loaded.hashes["new_base"])
        known = known_points(ctx.cache, *pair) if self.design == "known" else None
        result = run_search(objective, cfg.search, cfg.seed, len(loaded.val), self.search,
                            search_store(ctx, self.kind), ctx.progress, known)
        best = result.best
        remember(ctx.cache, *pair, (best.alpha, best.beta))
        factors, dropped = fused_init(best.alpha, best.beta, delta, old, loaded.spec, balanced)
        set_factors(model, factors)
        # Probes may come from the store (resumed or shared with another method): charge
        # their recorded cost, so time-to-readiness is the same as for a fresh search.
        return InitInfo(
            alpha=best.alpha, beta=best.beta, probes=result.probes,
            search_s=delta.seconds + result.seconds, search_wall_s=time.perf_counter() - start,
            search_examples_scored=result.examples_scored, search_stopped_early=result.stopped_early,
            fusion_dropped_energy=dropped, delta_cached=delta.cached,
            delta_dropped_energy_mean=sum(delta.dropped_energy.values()) / len(delta.dropped_energy),
            delta_relative_norm_mean=sum(delta.relative_delta.values()) / len(delta.relative_delta),
        )


def fused_init(
    alpha: float, beta: float, delta: DeltaProjection | None, old: LoraAdapter, spec: LoraAdapter,
    old_balance: bool = False,
) -> tuple[dict[str, LowRank], float]:
    """Eq. 7 for every module, as rank-r factors; returns the max dropped energy. With old_balance,
    each module's factors take the old adapter's ||B|| / ||A|| (the product is unchanged)."""
    factors, worst = {}, 0.0
    for module, old_lr in old.factors.items():
        d_lr = delta.factors[module] if delta else LowRank(old_lr.B[:, :0], old_lr.A[:0])
        fused, dropped = fuse_factors(alpha, d_lr, beta, old_lr, old.scaling, spec.r, spec.scaling)
        factors[module] = rebalance(fused, old_lr) if old_balance else fused
        worst = max(worst, dropped)
    return factors, worst


def project(ctx: InitContext) -> DeltaProjection:
    """Pi_r of the base delta for the adapter's modules, cached by both bases' content hashes."""
    cfg, loaded = ctx.cfg, ctx.loaded
    assert loaded.old_adapter is not None and loaded.old_dir is not None
    modules = loaded.old_adapter.modules
    key = cache_key(loaded.hashes["old_base"], loaded.hashes["new_base"], modules, loaded.spec.r,
                    cfg.search.svd, cfg.seed)
    return project_base_delta(WeightReader(loaded.old_dir), WeightReader(loaded.new_dir), modules, loaded.spec.r,
                              cfg.search.svd, cfg.seed, ctx.cache / "deltas" / f"{key}.safetensors", ctx.progress,
                              ctx.device)


def search_store(ctx: InitContext, kind: str) -> Path:
    """One probe store per (inputs, search settings): resumable, and shared by the
    methods that search the same thing (relora-paper and relora-no-sreg)."""
    cfg, loaded = ctx.cfg, ctx.loaded
    key = json.dumps([loaded.hashes, loaded.spec.r, loaded.spec.lora_alpha, cfg.data.model_dump(),
                      cfg.search.model_dump(), cfg.seed, kind], sort_keys=True)
    path = ctx.cache / "searches" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
