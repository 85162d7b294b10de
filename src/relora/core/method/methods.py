"""The method registry: each baseline and ablation is an init strategy plus an anchor schedule.

Every method that trains uses the same loop (relora.core.method.train.train); plain
fine-tuning is lambda1 = lambda2 = 0 with the same AdamW and LR schedule. Other
modules ask a Method what it needs (the old adapter, the old base, a search) and
never list method names themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from relora.core.model.config import ReadaptConfig
from relora.core.method.init import BaseOnly, FreshLora, InitStrategy, OldAdapter, SearchedFusion
from relora.core.model.loaded import InitContext
from relora.core.method.readiness import LookPolicy
from relora.core.method.record import InitInfo
from relora.errors import InputError


@dataclass(frozen=True)
class Method:
    name: str
    init: InitStrategy
    trains: bool
    anchored: bool  # scheduled regularization (Eq. 18/21); False means lambda = 0
    summary: str
    tables: frozenset[str] = frozenset()  # the paper's tables this method is a row of beyond II (e.g. "VIII")
    looks: LookPolicy = LookPolicy()  # when a checkpoint goes to the gate (the readiness floor's policy)

    @property
    def needs_adapter(self) -> bool:
        return self.init.needs_adapter

    @property
    def needs_old_base(self) -> bool:
        return self.init.needs_old_base

    @property
    def needs_probe(self) -> bool:
        """Whether its init floors the start's update retention (it then needs update_probe to measure it)."""
        return self.init.min_retention is not None

    @property
    def has_adapter(self) -> bool:
        """Whether a LoRA is attached, trained and saved (zero-shot has none)."""
        return self.init.has_adapter

    @property
    def search(self) -> str | None:
        return self.init.search

    def initialize(self, ctx: InitContext) -> InitInfo:
        return self.init(ctx)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("zero-shot", BaseOnly(), False, False, "the new base alone, no adapter"),
        Method("portllm", OldAdapter(), False, False, "the old adapter on the new base, no training"),
        Method("scratch", FreshLora(), True, False, "a fresh LoRA (PEFT default init), plain fine-tuning"),
        Method("portllm-ft", OldAdapter(), True, False, "the old adapter, then plain fine-tuning",
               frozenset({"VIII"})),
        Method("portllm-ft-powered", OldAdapter(), True, False,
               "the old adapter, then plain fine-tuning, with a checkpoint sent to the gate only where the gate is "
               "powered (D_val at least the old service's minus the margin the gate cannot certify), and a look "
               "that stops once the candidate is shown 0.01 below the old service",
               looks=LookPolicy(screen="powered", futility=0.01)),
        Method("portllm-ft-sliding", OldAdapter(), True, False,
               "portllm-ft-powered whose screen bar falls linearly over the training budget, from the powered bar "
               "at step 0 to the margin's (the old service's D_val minus the margin) at the budget's end, so that a "
               "service that trains slowly still reaches the gate before its budget runs out",
               looks=LookPolicy(screen="sliding", futility=0.01)),
        Method("relora", SearchedFusion("gradient", design="known", balance="old"), True, True,
               "per-group (layer x module type) fusion coefficients learned by a few Adam steps on training "
               "batches from the best known point (PortLLM, the revert point, earlier searches for other adapters "
               "on this base pair), the old adapter's factor balance, scheduled regularization"),
        Method("relora-reuse", SearchedFusion("gradient", design="known", balance="old", learn_once=True), True,
               True, "relora's init, but the per-group coefficients are learned only while this base pair has none: "
               "once an earlier service's search ended, each service screens PortLLM, the revert point and the "
               "earlier coefficients on D_val and starts from the best, with no search; scheduled regularization"),
        Method("relora-keep", SearchedFusion("gradient", design="known", balance="old", learn_once=True,
                                             min_retention=0.9), True, True,
               "relora-reuse whose start must keep 0.9 of the update on the update probe: a start that keeps less "
               "(the revert point) is replaced by PortLLM's before training; needs update_probe"),
        Method("relora-bo", SearchedFusion("bo", design="known", balance="old"), True, True,
               "BO-fused init started from the known points, with a smaller budget once earlier searches exist, "
               "the old adapter's factor balance, scheduled regularization"),
        Method("relora-paper", SearchedFusion("bo"), True, True,
               "the paper's exact algorithm: BO-fused init + scheduled regularization", frozenset({"IV", "VIII"})),
        Method("relora-no-sreg", SearchedFusion("bo"), True, False,
               "the paper's BO-fused init + plain fine-tuning (ablation)", frozenset({"VIII"})),
        Method("relora-grid", SearchedFusion("grid"), True, True, "grid-searched init + scheduled regularization",
               frozenset({"IV"})),
    )
}


# The roles some methods play for the others: the reference for speed-ups, the measure of the
# update's damage, the base alone, and relora's best fused init.
SCRATCH, PORTLLM, BASE_ONLY, RELORA = "scratch", "portllm", "zero-shot", "relora"
PORTLLM_FT = "portllm-ft"  # the simple alternative relora has to beat
PAPER_METHOD = "relora-paper"  # the paper's exact algorithm: its published numbers sit beside this one
# What `relora readapt` and a rollout run when no method is named: the fleet race's winner. At the strong
# update, PortLLM+FT (the old adapter, fine-tuned until the gate) made a 12-service fleet ready for less
# compute than relora's fused init (docs/results/fleet-race-strong), so it is the default; ReadaptConfig's
# and FleetDefaults' defaults name it (a test keeps them equal to this).
DEFAULT_METHOD = PORTLLM_FT


def method_named(name: str) -> Method:
    """The registered method, or a ValueError that lists the registry."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def method_for(cfg: ReadaptConfig, source: str | None = None) -> Method:
    """The config's method, once its inputs are checked against what the method needs (the registry
    decides, so the config module imports no method); source: the file or command line to name."""
    try:
        method = method_named(cfg.method)
    except ValueError as exc:
        raise InputError(source or "method", str(exc), "set method to one of the registered names") from None
    if method.needs_adapter and not cfg.adapter:
        raise InputError(source or "--adapter", f"method {cfg.method} needs --adapter (the old LoRA)",
                         "pass --adapter, or choose a method that starts without one (scratch, zero-shot)")
    if method.needs_old_base and not cfg.old_base:
        raise InputError(source or "--old-base", f"method {cfg.method} needs --old-base (to compute the base delta)",
                         "pass --old-base, or choose a method that does not project it (portllm, portllm-ft)")
    return method
