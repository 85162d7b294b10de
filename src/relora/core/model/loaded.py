"""What a run loaded and what an init strategy works with: plain containers, no behaviour.

A leaf of the core: the init strategies, the searches and readapt all take these, and it imports
nothing that imports them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from relora.core.model.adapter import LoraAdapter
from relora.core.model.config import ReadaptConfig
from relora.core.model.data import ScoringItem
from relora.core.model.device import model_device


@dataclass
class Loaded:
    new_dir: Path
    old_dir: Path | None  # only for methods that project the base delta
    pad_id: int
    items: dict[str, list[ScoringItem]]
    val: list[ScoringItem]  # D_val: the search objective
    ready: list[ScoringItem]  # the readiness checks: D_val itself unless data.ready_size
    labels: list[str]
    old_adapter: LoraAdapter | None
    spec: LoraAdapter  # the output adapter's shape (no factors)
    hashes: dict[str, str]
    probe: torch.Tensor | None = None  # update_probe's token blocks (retention)
    old_service_dir: Path | None = None  # the old base, for the old service (its quality, its loss on the probe)
    val_in_train: int = 0  # validation examples whose text the training file also has


@dataclass(frozen=True)
class InitContext:
    cfg: ReadaptConfig
    loaded: Loaded
    model: torch.nn.Module
    cache: Path
    progress: bool
    screen_bar: float | None = None  # D_val accuracy that sends a candidate to the gate (stop-when-ready)
    probe_losses: tuple[float, float] | None = None  # the old service's and PortLLM's loss on the update probe

    @property
    def device(self) -> torch.device:
        return model_device(self.model)
