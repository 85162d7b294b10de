"""The method registry: each baseline and ablation is an init plus an anchor schedule.

Every method that trains uses the same loop (relora.train.train); plain
fine-tuning is lambda1 = lambda2 = 0 with the same AdamW and LR schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InitKind = Literal["none", "old", "fresh", "bo", "grid"]


@dataclass(frozen=True)
class Method:
    name: str
    init: InitKind  # none: base only; old: the old adapter; fresh: PEFT default; bo/grid: searched fusion
    trains: bool
    anchored: bool  # scheduled regularization (Eq. 18/21); False means lambda = 0
    summary: str

    @property
    def needs_adapter(self) -> bool:
        return self.init in ("old", "bo", "grid")

    @property
    def needs_old_base(self) -> bool:
        return self.init in ("bo", "grid")


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("zero-shot", "none", False, False, "the new base alone, no adapter"),
        Method("portllm", "old", False, False, "the old adapter on the new base, no training"),
        Method("scratch", "fresh", True, False, "a fresh LoRA (PEFT default init), plain fine-tuning"),
        Method("portllm-ft", "old", True, False, "the old adapter, then plain fine-tuning"),
        Method("relora", "bo", True, True, "BO-fused init + scheduled regularization (the paper)"),
        Method("relora-no-sreg", "bo", True, False, "BO-fused init + plain fine-tuning (ablation)"),
        Method("relora-grid", "grid", True, True, "grid-searched init + scheduled regularization"),
    )
}
