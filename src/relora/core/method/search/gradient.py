"""The gradient strategy: learn the fusion coefficients with a few optimizer steps on training batches.

The fused weight W' + alpha_g * Pi_r(dW) + beta_g * s * B A is differentiable in the
coefficients, so one (alpha, beta) per group of modules (global, per module type, per
layer, or per layer x type) costs the same few steps whatever the number of groups,
where BO's probes grow with the dimension (the paper's first future-work item).

While the coefficients learn, the PEFT LoRA branches are switched off and forward
hooks add both low-rank terms at full rank (2r); the caller re-factors to rank r.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from relora.core.model.data import ScoringItem, tokens_in
from relora.core.model.groups import Groups, group_of
from relora.core.math.ops import LowRank
from relora.core.method.train import accumulate_gradients, batch_order

Coefficients = dict[str, tuple[float, float]]  # group -> (alpha, beta)


@dataclass(frozen=True)
class FusionTerms:
    """What the coefficients weigh, per module: Pi_r(dW) and the old adapter with its scaling."""

    delta: dict[str, LowRank]
    old: dict[str, LowRank]
    old_scaling: float


@dataclass
class GradientResult:
    coefficients: Coefficients
    train_losses: list[float]  # per optimizer step, before it
    seconds: float
    examples: int  # training examples through forward and backward
    tokens: int = 0  # their tokens (prompt and answer)


@contextmanager
def fused_branches(model: nn.Module, layers: dict[str, nn.Module], terms: FusionTerms, groups: dict[str, str],
                   coeffs: dict[str, torch.Tensor]) -> Iterator[None]:
    """The model computes W' x + alpha_g Pi_r(dW) x + beta_g s B A x, with the LoRA branches off."""

    def hook_for(module: str):  # noqa: ANN202 - a torch forward hook
        d, o, c = terms.delta[module], terms.old[module], coeffs[groups[module]]

        def add_terms(_layer: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            x = args[0].float()
            extra = c[0] * ((x @ d.A.T) @ d.B.T) + c[1] * terms.old_scaling * ((x @ o.A.T) @ o.B.T)
            return output + extra.to(output.dtype)

        return add_terms

    handles = [layer.register_forward_hook(hook_for(name)) for name, layer in layers.items()]
    try:
        with model.disable_adapter():
            yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True, kw_only=True)
class GradientPlan:
    """How the coefficients learn: on which training batches, for how many Adam steps, inside which box."""
    train_items: list[ScoringItem]
    pad_id: int
    steps: int
    batch_size: int
    micro_batch_size: int
    lr: float
    bounds: tuple[tuple[float, float], tuple[float, float]]  # (alpha's, beta's)
    seed: int
    progress: bool = True


def learn_coefficients(model: nn.Module, layers: dict[str, nn.Module], terms: FusionTerms, groups: dict[str, str],
                       start: tuple[float, float] | Coefficients, plan: GradientPlan) -> GradientResult:
    """Adam on the coefficients (one pair per group, starting at `start`: one pair for all, or each group's
    own, as an earlier search learned them), kept inside the box."""
    train_items, pad_id, steps, batch_size = plan.train_items, plan.pad_id, plan.steps, plan.batch_size
    micro_batch_size, lr, bounds, seed, progress = plan.micro_batch_size, plan.lr, plan.bounds, plan.seed, plan.progress
    began = time.perf_counter()
    coeffs = {g: torch.tensor(start[g] if isinstance(start, dict) else start, dtype=torch.float32, device=terms.old[m].A.device, requires_grad=True)
              for m, g in groups.items()}
    optimizer = torch.optim.Adam(list(coeffs.values()), lr=lr)
    low = torch.tensor([bounds[0][0], bounds[1][0]])
    high = torch.tensor([bounds[0][1], bounds[1][1]])
    losses: list[float] = []
    tokens = 0
    # a seed of its own, so the coefficients and the later fine-tuning see different batches
    order = batch_order(len(train_items), batch_size, steps, seed + 104_729)
    was_training = model.training
    model.train()
    with fused_branches(model, layers, terms, groups, coeffs):
        for idx in tqdm(order, desc="search (gradient)", disable=not progress, leave=False):
            optimizer.zero_grad(set_to_none=True)
            batch = [train_items[i] for i in idx]
            tokens += tokens_in(batch)
            losses.append(accumulate_gradients(model, batch, pad_id, micro_batch_size))
            optimizer.step()
            with torch.no_grad():
                for c in coeffs.values():
                    c.copy_(torch.maximum(torch.minimum(c, high.to(c.device)), low.to(c.device)))
    model.train(was_training)
    learned = {g: (float(c[0].detach()), float(c[1].detach())) for g, c in coeffs.items()}
    return GradientResult(learned, losses, time.perf_counter() - began, steps * batch_size, tokens)
