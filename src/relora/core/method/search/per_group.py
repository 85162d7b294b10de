"""relora's search: per-group fusion coefficients learned by gradient steps from the best known point.

It scores PortLLM and the known points (the BO loop's initial design, no proposals), re-scores the
best on all of D_val, scores earlier searches' per-group coefficients on all of D_val, learns
per-group coefficients from the best of these (the start), and keeps them only when they beat the
start on all of D_val. It returns a SearchResult like the BO and grid searches, with its end point
chosen and the per-group coefficients beside it.
"""

from __future__ import annotations

import time
from dataclasses import replace

from relora.core.model.adapter import lora_modules, set_factors
from relora.core.method.fusion import fused_init
from relora.core.model.loaded import InitContext
from relora.core.model.scoring import evaluate
from relora.core.method.search.gradient import FusionTerms, GradientPlan, learn_coefficients
from relora.core.model.groups import group_of
from relora.core.method.search.loop import Objective, SearchResult, run_search
from relora.core.method.search.strategy import Coefficients, FusedFrom, SearchStrategy, Starts, plan_for
from relora.core.method.measures import Probe


def per_group_search(ctx: InitContext, objective: Objective, fused: FusedFrom, starts: Starts) -> SearchResult:
    """starts.learn False: the screened start (PortLLM, the known points, earlier coefficients) is the init, and
    no coefficients are learned."""
    cfg, loaded, s = ctx.cfg, ctx.loaded, ctx.cfg.search
    known, ready_at = starts.known, starts.ready_at
    n_design = 1 + len(known or [])
    design = s.model_copy(update={"trials": n_design, "n_init": n_design, "rescore_top": 1})
    begun = run_search(objective, design, plan_for(ctx, starts, "bo"))  # the design only: BO's first points
    if begun.ready is not None:
        return begun
    result = SearchResult(explored=begun.probes, stop_s=begun.stop_s, chosen=begun.best)
    layers = lora_modules(ctx.model)
    groups = {m: group_of(m, s.groups) for m in layers}
    start: tuple[float, float] | Coefficients = (begun.best.alpha, begun.best.beta)
    for prior in (p for p in starts.priors if set(p) == set(groups.values())):  # learned with the same grouping
        probe = score_groups(ctx, fused, groups, prior, "known-groups", 0.0)
        result.explored.append(probe)
        if probe.val_loss < result.best.val_loss:
            start = prior
            result = replace(result, chosen=probe, groups=prior, per_module={m: prior[g] for m, g in groups.items()})
            if ready_at is not None and (probe.val_accuracy or 0.0) >= ready_at:
                return result
    if not starts.learn:
        return result
    old = fused.old
    plan = GradientPlan(train_items=loaded.items["train"], pad_id=loaded.pad_id, steps=s.gradient_steps,
                        batch_size=cfg.training.batch_size, micro_batch_size=cfg.training.micro_batch_size,
                        lr=s.gradient_lr, bounds=(s.alpha_bounds, s.beta_bounds), seed=cfg.seed, progress=ctx.progress)
    learned = learn_coefficients(ctx.model, layers, FusionTerms(fused.delta.factors, old.factors, old.scaling), groups,
                                 start, plan)
    probe = score_groups(ctx, fused, groups, learned.coefficients, "gradient", learned.seconds)
    result.explored.append(probe)
    result.train_examples, result.train_tokens = learned.examples, learned.tokens
    if probe.val_loss >= result.best.val_loss:
        return result  # the start stays: the learned coefficients did not lower D_val's loss
    return replace(result, chosen=probe, groups=learned.coefficients,
                   per_module={m: learned.coefficients[g] for m, g in groups.items()})


def score_groups(ctx: InitContext, fused: FusedFrom, groups: dict[str, str], coefficients: Coefficients, stage: str,
                 propose_s: float) -> Probe:
    """Per-group coefficients scored on all of D_val; the probe shows their mean (alpha, beta)."""
    t0 = time.perf_counter()
    per_module = {m: coefficients[g] for m, g in groups.items()}
    factors, _ = fused_init((0.0, 0.0), fused.delta, fused.old, ctx.loaded.spec, fused.balanced, per_module)
    set_factors(ctx.model, factors)
    res = evaluate(ctx.model, ctx.loaded.val, ctx.loaded.pad_id, ctx.cfg.training.eval_batch_size)
    mean = [sum(c[i] for c in coefficients.values()) / len(coefficients) for i in (0, 1)]
    return Probe(mean[0], mean[1], res.loss, propose_s, time.perf_counter() - t0, len(ctx.loaded.val), stage,
                 val_accuracy=res.accuracy)


class GradientSearch(SearchStrategy):
    """relora's: per-group coefficients learned by gradient steps from the best known point."""

    name = "gradient"

    def run(self, ctx: InitContext, objective: Objective, fused: FusedFrom, starts: Starts) -> SearchResult:
        return per_group_search(ctx, objective, fused, starts)
