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

from relora.core.adapter import LoraAdapter, lora_modules, set_factors
from relora.core.delta import DeltaProjection, cache_key, project_base_delta
from relora.core.device import model_device
from relora.core.ops import LowRank, fuse_factors, rebalance
from relora.core.scoring import evaluate
from relora.core.search import Objective, Probe, run_search
from relora.core.search.gradient import FusionTerms, group_of, learn_coefficients
from relora.core.search.known import REVERT, KnownPoint, design_points, earlier, remember
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
    search_strategy: str | None = None  # bo, grid or gradient
    coefficients: dict[str, tuple[float, float]] | None = None  # gradient: (alpha, beta) per group of modules
    search_known_earlier: int | None = None  # earlier searches' best points on this base pair in the design
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


@dataclass(frozen=True)
class Found:
    """Where a search ended: one (alpha, beta), or per-module pairs (the gradient strategy)."""

    alpha: float
    beta: float
    probes: list[Probe]
    seconds: float
    stopped_early: bool
    per_module: dict[str, tuple[float, float]] | None = None
    groups: dict[str, tuple[float, float]] | None = None
    train_examples: int = 0  # training examples through forward and backward (the gradient steps)


class SearchedFusion(InitStrategy):
    """Eq. 7's fusion alpha * Pi_r(dW) + beta * s * B A, with (alpha, beta) chosen by a search."""

    needs_adapter = True
    needs_old_base = True

    def __init__(self, search: Literal["bo", "grid", "gradient"], design: Literal["paper", "known"] = "paper",
                 balance: Literal["even", "old"] = "even") -> None:
        """design known: the revert point and earlier searches' best points on this base pair follow
        PortLLM's in the initial design. balance old: each module's init keeps the old adapter's
        ||B|| / ||A|| instead of splitting sqrt(S) evenly (under Adam the split sets the step size on B A).
        gradient: per-group coefficients learned on training batches from the best known point."""
        self.search, self.design, self.balance = search, design, balance

    def strategy(self, cfg: ReadaptConfig) -> str:
        """search.strategy overrides BO and the gradient; the grid baseline stays a grid."""
        return self.search if self.search == "grid" or cfg.search.strategy is None else cfg.search.strategy

    def store_kind(self, strategy: str) -> str:
        """What the probe store is keyed by: methods whose searches probe the same thing share them."""
        return strategy if self.design == "paper" and self.balance == "even" else \
            f"{strategy}-{self.design}-{self.balance}"

    def __call__(self, ctx: InitContext) -> InitInfo:
        cfg, loaded, model = ctx.cfg, ctx.loaded, ctx.model
        old = loaded.old_adapter
        assert old is not None
        start = time.perf_counter()
        delta = project(ctx)
        delta.factors = {m: lr.to(ctx.device) for m, lr in delta.factors.items()}  # the fusion runs there too
        old = replace(old, factors={m: lr.to(ctx.device) for m, lr in old.factors.items()})
        balanced, strategy = self.balance == "old", self.strategy(cfg)
        ready_at = cfg.threshold if cfg.stop_when_ready else None

        def objective(a: float, b: float, n: int) -> tuple[float, float]:
            set_factors(model, fused_init(a, b, delta, old, loaded.spec, balanced)[0])
            # D_val is a seeded random sample, so its first n examples are a random screening subset
            res = evaluate(model, loaded.val[:n], loaded.pad_id, cfg.training.eval_batch_size)
            return res.loss, res.accuracy

        pair, adapter = (loaded.hashes["old_base"], loaded.hashes["new_base"]), loaded.hashes["adapter"]
        uses_known = self.design == "known" or strategy == "gradient"
        # keyed by method: no method starts from another's answer without paying for its search (one index read)
        found_earlier = earlier(ctx.cache, cfg.method, *pair, adapter) if uses_known else []
        known = design_points(found_earlier) if uses_known else None
        priors = [k.groups for k in found_earlier if k.groups] if strategy == "gradient" else []
        if strategy == "gradient":
            found = self._gradient(ctx, objective, delta, old, known, priors, ready_at)
        else:
            search = cfg.search
            if known is not None and len(known) > 1:  # earlier searches found the basin: a smaller budget
                search = search.model_copy(update={"trials": min(search.trials, search.seeded_trials)})
            result = run_search(objective, search, cfg.seed, len(loaded.val), strategy,
                                search_store(ctx, self.store_kind(strategy), known), ctx.progress, known, ready_at)
            found = Found(result.best.alpha, result.best.beta, result.probes, result.seconds, result.stopped_early)
        if uses_known:  # the paper's search starts from no known points, so it does not feed them either
            end = KnownPoint(groups=found.groups) if found.groups else KnownPoint((found.alpha, found.beta))
            remember(ctx.cache, cfg.method, *pair, end, adapter)  # only what was evaluated
        factors, dropped = fused_init(found.alpha, found.beta, delta, old, loaded.spec, balanced, found.per_module)
        set_factors(model, factors)
        # Probes may come from the store (resumed or shared with another method): charge
        # their recorded cost, so time-to-readiness is the same as for a fresh search.
        return InitInfo(
            alpha=found.alpha, beta=found.beta, probes=found.probes, search_strategy=strategy,
            search_known_earlier=None if known is None else len([p for p in known if p != REVERT]) + len(priors),
            coefficients=found.groups, search_s=delta.seconds + found.seconds,
            search_wall_s=time.perf_counter() - start, search_examples_scored=sum(p.n_examples for p in found.probes) + found.train_examples,
            search_stopped_early=found.stopped_early, fusion_dropped_energy=dropped, delta_cached=delta.cached,
            delta_dropped_energy_mean=sum(delta.dropped_energy.values()) / len(delta.dropped_energy),
            delta_relative_norm_mean=sum(delta.relative_delta.values()) / len(delta.relative_delta),
        )

    def _gradient(self, ctx: InitContext, objective: Objective, delta: DeltaProjection, old: LoraAdapter,
                  known: list[tuple[float, float]] | None, priors: list[dict[str, tuple[float, float]]],
                  ready_at: float | None) -> Found:
        """Score PortLLM and the known points, re-score the best on all of D_val; score earlier searches'
        per-group coefficients on all of D_val; learn per-group coefficients from the best of these (the
        start), and keep them when they beat the start on all of D_val."""
        cfg, loaded, s = ctx.cfg, ctx.loaded, ctx.cfg.search
        n_design = 1 + len(known or [])
        design = s.model_copy(update={"trials": n_design, "n_init": n_design, "rescore_top": 1})
        begun = run_search(objective, design, cfg.seed, len(loaded.val), "bo",
                           search_store(ctx, self.store_kind("gradient"), known), ctx.progress, known, ready_at)
        first = begun.best
        found = Found(first.alpha, first.beta, begun.probes, begun.seconds, False)
        if begun.ready is not None:
            return found
        layers = lora_modules(ctx.model)
        groups = {m: group_of(m, s.groups) for m in layers}
        balanced = self.balance == "old"
        start: tuple[float, float] | dict[str, tuple[float, float]] = (first.alpha, first.beta)
        start_loss = first.val_loss
        for prior in (p for p in priors if set(p) == set(groups.values())):  # learned with the same grouping
            probe = self._score_groups(ctx, delta, old, groups, prior, balanced, "known-groups", 0.0)
            found = replace(found, probes=[*found.probes, probe], seconds=found.seconds + probe.eval_s)
            if probe.val_loss < start_loss:
                start, start_loss = prior, probe.val_loss
                found = replace(found, alpha=probe.alpha, beta=probe.beta, groups=prior,
                                per_module={m: prior[g] for m, g in groups.items()})
                if ready_at is not None and (probe.val_accuracy or 0.0) >= ready_at:
                    return found
        learned = learn_coefficients(
            ctx.model, layers, FusionTerms(delta.factors, old.factors, old.scaling), groups, start,
            loaded.items["train"], loaded.pad_id, s.gradient_steps, cfg.training.batch_size,
            cfg.training.micro_batch_size, s.gradient_lr, (s.alpha_bounds, s.beta_bounds), cfg.seed, ctx.progress)
        probe = self._score_groups(ctx, delta, old, groups, learned.coefficients, balanced, "gradient", learned.seconds)
        found = replace(found, probes=[*found.probes, probe], seconds=found.seconds + probe.propose_s + probe.eval_s,
                        train_examples=learned.examples)
        if probe.val_loss >= start_loss:
            return found  # the start stays: the learned coefficients did not lower D_val's loss
        return replace(found, alpha=probe.alpha, beta=probe.beta, groups=learned.coefficients,
                       per_module={m: learned.coefficients[g] for m, g in groups.items()})

    @staticmethod
    def _score_groups(ctx: InitContext, delta: DeltaProjection, old: LoraAdapter, groups: dict[str, str],
                      coefficients: dict[str, tuple[float, float]], balanced: bool, stage: str,
                      propose_s: float) -> Probe:
        """Per-group coefficients scored on all of D_val; the probe shows their mean (alpha, beta)."""
        t0 = time.perf_counter()
        per_module = {m: coefficients[g] for m, g in groups.items()}
        set_factors(ctx.model, fused_init(0, 0, delta, old, ctx.loaded.spec, balanced, per_module)[0])
        res = evaluate(ctx.model, ctx.loaded.val, ctx.loaded.pad_id, ctx.cfg.training.eval_batch_size)
        mean = [sum(c[i] for c in coefficients.values()) / len(coefficients) for i in (0, 1)]
        return Probe(mean[0], mean[1], res.loss, propose_s, time.perf_counter() - t0, len(ctx.loaded.val), stage,
                     val_accuracy=res.accuracy)


def fused_init(
    alpha: float, beta: float, delta: DeltaProjection | None, old: LoraAdapter, spec: LoraAdapter,
    old_balance: bool = False, per_module: dict[str, tuple[float, float]] | None = None,
) -> tuple[dict[str, LowRank], float]:
    """Eq. 7 for every module, as rank-r factors; returns the max dropped energy. With old_balance,
    each module's factors take the old adapter's ||B|| / ||A|| (the product is unchanged).
    per_module: each module's own (alpha, beta), in place of the global pair."""
    factors, worst = {}, 0.0
    for module, old_lr in old.factors.items():
        d_lr = delta.factors[module] if delta else LowRank(old_lr.B[:, :0], old_lr.A[:0])
        a, b = per_module[module] if per_module else (alpha, beta)
        fused, dropped = fuse_factors(a, d_lr, b, old_lr, old.scaling, spec.r, spec.scaling)
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


def search_store(ctx: InitContext, kind: str, known: list[tuple[float, float]] | None = None) -> Path:
    """One probe store per (inputs, search settings, known starting points): resumable, and shared
    by the methods that search the same thing (relora-paper and relora-no-sreg)."""
    cfg, loaded = ctx.cfg, ctx.loaded
    key = json.dumps([loaded.hashes, loaded.spec.r, loaded.spec.lora_alpha, cfg.data.model_dump(),
                      cfg.search.model_dump(), cfg.seed, kind] + ([known] if known else []), sort_keys=True)
    path = ctx.cache / "searches" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
