"""The fleet race: one fleet rolled out once per method and seed, each with a cache of its own.

Every method gets the same services, the same relative gate on the gate set, stop-when-ready and
the same budgets; only `defaults.method` and `defaults.seed` change. A rollout's known points and
delta projection live in its own cache, so no method or seed starts from another's searches. Each
rollout is resumable through its ledger, so a re-run finishes what is missing and redoes nothing.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from relora.core.methods import METHODS, PORTLLM, PORTLLM_FT, RELORA, PAPER_METHOD
from relora.errors import InputError
from relora.fleet.config import FleetConfig
from relora.fleet.race_report import write_race_report
from relora.fleet.ledger import FINAL
from relora.fleet.report import open_ledger, summary
from relora.fleet.rollout import rollout
from relora.io import atomic_write
from relora.provenance import provenance

RACE_METHODS = (PORTLLM, PORTLLM_FT, RELORA, PAPER_METHOD)  # relora before the paper's: it matters more
SUMMARY_FILE = "summary.json"


def rollout_dir(out: Path, seed: int, method: str) -> Path:
    return out / f"seed{seed}" / method


def fleet_for(template: FleetConfig, out: Path, seed: int, method: str) -> FleetConfig:
    """The template fleet with this method and seed for every service, and its own out, ledger and cache."""
    where = rollout_dir(out, seed, method)
    defaults = template.defaults.model_copy(update={"method": method, "seed": seed})
    adapters = [entry.model_copy(update={"method": None}) for entry in template.adapters]
    return template.model_copy(update={"out": str(where / "rollout"), "cache_dir": str(where / "cache"),
                                       "ledger": None, "defaults": defaults, "adapters": adapters})


def run_race(template: FleetConfig, out: str, methods: tuple[str, ...] = RACE_METHODS,
             seeds: tuple[int, ...] = (0, 1, 2), progress: bool = True, roll: bool = True) -> dict[str, Any]:
    """Roll the fleet out per (seed, method), then write summary.json, report.md and race.png under out.
    roll False: only summarize the rollouts that finished (the rest are listed as unfinished)."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise InputError("--methods", f"unknown method(s) {', '.join(unknown)}", f"choose from {', '.join(METHODS)}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    started = provenance()
    for seed in seeds if roll else ():
        for method in methods:
            rollout(fleet_for(template, root, seed, method), progress=progress)
    result = summarize(root, methods, seeds) | {"provenance": started, "run_revisions": run_revisions(root)}
    atomic_write(root / SUMMARY_FILE, json.dumps(result, indent=1) + "\n")
    write_race_report(result, root)
    return result


def fleet_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One rollout's figures: what it cost, how many services it made ready and how, and what they kept."""
    n = len(rows)
    ready = [r for r in rows if r["state"] == "ready"]
    served = [(r["val_accuracy"] if r["state"] == "ready" else r["fallback_val_accuracy"]) for r in rows]
    fleet = summary(rows, None)  # the fleet report's own figures: time to ready, retention
    retention = fleet["retention"]
    return {
        "services": n,
        "ready": len(ready),
        "zero_step_share": sum(r["steps"] == 0 for r in ready) / n if n else None,
        "compute_s": sum(r["cpu_s"] or 0.0 for r in rows),  # CPU seconds of search + training, every service
        "wall_s": sum(r["total_s"] or 0.0 for r in rows),
        "time_to_ready_median_s": fleet["time_to_ready_s"]["median"],
        "time_to_ready_max_s": fleet["time_to_ready_s"]["max"],
        "never_ready": sum(r["state"] != "ready" for r in rows),
        # the gate judged on the gate set: a published service below it would be a bug, so it is counted
        "published_below_gate": sum(r["val_accuracy"] < r["threshold"] for r in ready),
        # the same gate on the test split, which nothing chose or judged: how far the gate set can be trusted
        "published_below_gate_on_test": _below_on_test(ready),
        "quality_vs_old": statistics.fmean(s - r["old_service_val_accuracy"] for s, r in zip(served, rows)),
        "negative_flip_rate": statistics.fmean(r["negative_flip_rate"] for r in rows),
        # the search's share of the re-adaptation's own seconds (search + training), over the fleet
        "search_share": sum(r["search_s"] or 0.0 for r in rows) / max(sum(r["total_s"] or 0.0 for r in rows), 1e-9),
        "retention_mean": retention[0] if retention else None,
        "retention_min": retention[1] if retention else None,
        "judged_on": sorted({f"{r['judged_on']} ({r['gate_examples']})" for r in rows}),
    }


def run_revisions(root: Path) -> list[str]:
    """The relora revisions every re-adaptation under root ran at (from each relora.json)."""
    found = set()
    for record in root.glob("seed*/*/rollout/runs/*/relora.json"):
        found.add(str(json.loads(record.read_text()).get("git_revision")))
    return sorted(found)


def finished_rows(rollout: Path) -> list[dict[str, Any]] | None:
    """A rollout's ledger rows once every one is final; None while any is pending or running, or before it began."""
    if not (rollout / "ledger.sqlite3").is_file():
        return None
    rows = open_ledger(str(rollout)).rows()
    return rows if rows and all(r["state"] in FINAL for r in rows) else None


def _below_on_test(ready: list[dict[str, Any]]) -> int | None:
    """Published services whose test accuracy is below their gate; None when the fleet has no test splits."""
    tested = [r for r in ready if r["test_accuracy"] is not None]
    return sum(r["test_accuracy"] < r["threshold"] for r in tested) if tested else None


def _over_seeds(per_seed: list[dict[str, Any]], key: str, how: str) -> float | None:
    values = [m[key] for m in per_seed if m[key] is not None]
    if not values:
        return None
    return {"median": statistics.median, "mean": statistics.fmean, "min": min, "max": max, "sum": sum}[how](values)


def summarize(root: Path, methods: tuple[str, ...], seeds: tuple[int, ...]) -> dict[str, Any]:
    """Per method: each seed's rollout figures, and medians and means over seeds."""
    out: dict[str, Any] = {"methods": {}, "seeds": list(seeds)}
    for method in methods:
        per_seed, unfinished = [], []
        for seed in seeds:
            rows = finished_rows(rollout_dir(root, seed, method) / "rollout")
            if rows is None:
                unfinished.append(seed)  # reported as such, never counted as services that failed the gate
            else:
                per_seed.append(fleet_metrics(rows) | {"seed": seed})
        out["methods"][method] = {
            "unfinished_seeds": unfinished,
            "compute_s_median": _over_seeds(per_seed, "compute_s", "median"),
            "zero_step_share": _over_seeds(per_seed, "zero_step_share", "mean"),
            "retention_mean": _over_seeds(per_seed, "retention_mean", "mean"),
            "retention_min": _over_seeds(per_seed, "retention_min", "min"),
            "published_below_gate": _over_seeds(per_seed, "published_below_gate", "sum"),
            "never_ready": _over_seeds(per_seed, "never_ready", "sum"),
            "time_to_ready_median_s": _over_seeds(per_seed, "time_to_ready_median_s", "median"),
            "time_to_ready_max_s": _over_seeds(per_seed, "time_to_ready_max_s", "max"),
            "quality_vs_old": _over_seeds(per_seed, "quality_vs_old", "mean"),
            "negative_flip_rate": _over_seeds(per_seed, "negative_flip_rate", "mean"),
            "per_seed": per_seed,
        }
    return out
