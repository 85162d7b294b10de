"""Init strategies: how each method sets the adapter's starting factors before training.

A method in the registry (relora.core.method.methods) names one of these; readapt calls it
and never branches on method names. Each strategy also declares its needs (the old
adapter, the old base) so config validation and input loading ask it, not a list.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Literal

from relora.core.model.adapter import set_factors
from relora.core.model.config import ReadaptConfig
from relora.core.method.fusion import fused_init, project
from relora.core.model.loaded import InitContext
from relora.core.method.record import InitInfo
from relora.core.model.scoring import evaluate, lm_loss, retention_value
from relora.core.method.search.known import REVERT, KnownPoint, design_points, earlier, remember
from relora.core.method.search.loop import Objective, SearchResult
from relora.core.method.search.registry import search_for
from relora.core.method.search.strategy import FusedFrom, Starts


class InitStrategy:
    """A fresh LoRA with PEFT's default init (kaiming A, zero B), seeded. Subclasses say what else they need."""

    needs_adapter: bool = False  # reads the old adapter's factors
    needs_old_base: bool = False  # projects the base delta
    has_adapter: bool = True  # attaches, trains and saves a LoRA
    search: str | None = None
    min_retention: float | None = None  # the start's own floor on update retention (only a searched start has one)

    def __call__(self, ctx: InitContext) -> InitInfo:
        return InitInfo()

    def retention_floor(self, cfg: ReadaptConfig) -> float | None:
        """The least share of the update the start must keep (only a searched start can undo it)."""
        return None


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
        set_factors(ctx.model, old.factors if same else fused_init((0.0, 1.0), None, old, spec)[0])
        return InitInfo(alpha=0.0, beta=1.0)


class SearchedFusion(InitStrategy):
    """Eq. 7's fusion alpha * Pi_r(dW) + beta * s * B A, with (alpha, beta) chosen by a search."""

    needs_adapter = True
    needs_old_base = True

    def __init__(self, search: Literal["bo", "grid", "gradient"], design: Literal["paper", "known"] = "paper",
                 balance: Literal["even", "old"] = "even", learn_once: bool = False,
                 min_retention: float | None = None) -> None:
        """design known: the revert point and earlier searches' best points on this base pair follow
        PortLLM's in the initial design. balance old: each module's init keeps the old adapter's
        ||B|| / ||A|| instead of splitting sqrt(S) evenly (under Adam the split sets the step size on B A).
        gradient: per-group coefficients learned on training batches from the best known point; learn_once: only
        while this base pair has no earlier learned coefficients (the fleet's first services pay for the rest).
        min_retention: the method's floor on its start's update retention (search.min_retention overrides it)."""
        self.search, self.design, self.balance, self.learn_once = search, design, balance, learn_once
        self.min_retention = min_retention

    def retention_floor(self, cfg: ReadaptConfig) -> float | None:
        return cfg.search.min_retention if cfg.search.min_retention is not None else self.min_retention

    def strategy(self, cfg: ReadaptConfig) -> str:
        """search.strategy overrides BO and the gradient; the grid baseline stays a grid."""
        return self.search if self.search == "grid" or cfg.search.strategy is None else cfg.search.strategy

    def store_kind(self, strategy: str) -> str:
        """What the probe store is keyed by: methods whose searches probe the same thing share them."""
        return strategy if self.design == "paper" and self.balance == "even" else \
            f"{strategy}-{self.design}-{self.balance}"

    def __call__(self, ctx: InitContext) -> InitInfo:
        """Project, search (the strategy's), fuse."""
        cfg, loaded, model = ctx.cfg, ctx.loaded, ctx.model
        assert loaded.old_adapter is not None
        start = time.perf_counter()
        delta = project(ctx)
        delta.factors = {m: lr.to(ctx.device) for m, lr in delta.factors.items()}  # the fusion runs there too
        old = replace(loaded.old_adapter, factors={m: lr.to(ctx.device) for m, lr in loaded.old_adapter.factors.items()})
        balanced, strategy = self.balance == "old", self.strategy(cfg)

        def objective(a: float, b: float, n: int) -> tuple[float, float]:
            set_factors(model, fused_init((a, b), delta, old, loaded.spec, balanced)[0])
            # D_val is a seeded random sample, so its first n examples are a random screening subset
            res = evaluate(model, loaded.val[:n], loaded.pad_id, cfg.training.eval_batch_size)
            return res.loss, res.accuracy

        pair, adapter = (loaded.hashes["old_base"], loaded.hashes["new_base"]), loaded.hashes["adapter"]
        uses_known = self.design == "known" or strategy == "gradient"
        # keyed by method: no method starts from another's answer without paying for its search (one index read)
        found_earlier = earlier(ctx.cache, cfg.method, *pair, adapter) if uses_known else []
        known = design_points(found_earlier) if uses_known else None
        priors = [k.groups for k in found_earlier if k.groups] if strategy == "gradient" else []
        # learn_once: a base pair with an earlier search (another service's) pays for no new one
        learn = not (self.learn_once and found_earlier)
        result = self._search(ctx, strategy, objective, FusedFrom(delta=delta, old=old, balanced=balanced),
                              Starts(known=known, priors=priors, learn=learn))
        if uses_known:  # the paper's search starts from no known points, so it does not feed them either
            end = KnownPoint(groups=result.groups) if result.groups else KnownPoint((result.best.alpha, result.best.beta))
            remember(ctx.cache, cfg.method, *pair, end, adapter)  # only what was evaluated
        best = result.best
        factors, dropped = fused_init((best.alpha, best.beta), delta, old, loaded.spec, balanced, result.per_module)
        set_factors(model, factors)
        floor = self.retention_floor(cfg)
        kept = start_retention(ctx) if floor is not None else None
        replaced = kept is not None and kept < floor  # kept is measured only under a floor
        if replaced:  # the start undoes too much of the update: train from PortLLM's instead (the search is paid)
            OldAdapter()(ctx)
        # Probes may come from the store (resumed or shared with another method): charge
        # their recorded cost, so time-to-readiness is the same as for a fresh search.
        return InitInfo(
            alpha=0.0 if replaced else best.alpha, beta=1.0 if replaced else best.beta, probes=result.probes,
            search_strategy=strategy, start_retention=kept, start_replaced=replaced,
            search_known_earlier=None if known is None else len([p for p in known if p != REVERT]) + len(priors),
            coefficients=None if replaced else result.groups, search_s=delta.seconds + result.seconds,
            search_wall_s=time.perf_counter() - start, search_examples_scored=result.examples_scored,
            search_train_examples=result.train_examples, search_train_tokens=result.train_tokens,
            search_stopped_early=result.stopped_early, fusion_dropped_energy=dropped, delta_cached=delta.cached,
            delta_dropped_energy_mean=sum(delta.dropped_energy.values()) / len(delta.dropped_energy),
            delta_relative_norm_mean=sum(delta.relative_delta.values()) / len(delta.relative_delta),
        )

    def _search(self, ctx: InitContext, strategy: str, objective: Objective, fused: FusedFrom,
                starts: Starts) -> SearchResult:
        """The strategy's search (the registry's), with its probe store and stop-when-ready's bar."""
        ready_at = ctx.screen_bar if ctx.cfg.stop_when_ready else None
        store = search_store(ctx, self.store_kind(strategy), starts.known)
        return search_for(strategy).run(ctx, objective, fused, replace(starts, ready_at=ready_at, store=store))


def start_retention(ctx: InitContext) -> float | None:
    """The start set on the model: its retention of the update on the probe, (L_old - L_start) / (L_old -
    L_PortLLM); None without a probe whose loss the update moved."""
    if ctx.loaded.probe is None or ctx.probe_losses is None:
        return None
    return retention_value(*ctx.probe_losses, lm_loss(ctx.model, ctx.loaded.probe))


def search_store(ctx: InitContext, kind: str, known: list[tuple[float, float]] | None = None) -> Path:
    """One probe store per (inputs, search settings, known starting points): resumable, and shared
    by the methods that search the same thing (relora-paper and relora-no-sreg)."""
    cfg, loaded = ctx.cfg, ctx.loaded
    key = json.dumps([loaded.hashes, loaded.spec.r, loaded.spec.lora_alpha, cfg.data.model_dump(),
                      cfg.search.model_dump(), cfg.seed, kind] + ([known] if known else []), sort_keys=True)
    path = ctx.cache / "searches" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
