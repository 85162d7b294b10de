"""The fleet race: one fleet rolled out once per method and seed, each with a cache of its own.

Every method gets the same services, the same relative gate on the gate set, stop-when-ready and
the same budgets; only `defaults.method` and `defaults.seed` change. A rollout's known points and
delta projection live in its own cache, so no method or seed starts from another's searches. Each
rollout is resumable through its ledger, so a re-run finishes what is missing and redoes nothing.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relora.core.method.methods import METHODS, PORTLLM, PORTLLM_FT, RELORA, PAPER_METHOD
from relora.errors import InputError
from relora.fleet.config import FleetConfig
from relora.fleet.race_report import write_race_report
from relora.fleet.ledger import FINAL
from relora.fleet.report import open_ledger, summary
from relora.core.math import gate as tests
from relora.core.run.outputs import check_out
from relora.fleet.rollout import fleet_inputs, rollout
from relora.io import atomic_write
from relora.provenance import git_revision, provenance

RACE_METHODS = (PORTLLM, PORTLLM_FT, RELORA, PAPER_METHOD)  # relora before the paper's: it matters more
RACE_SEEDS = (0, 1, 2)
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


@dataclass(frozen=True, kw_only=True)
class RacePlan:
    """What a race runs: its methods and seeds (a repeat is one rollout, once; empty: RACE_METHODS and RACE_SEEDS,
    or a profile's own), whether it rolls out at all (roll False: only summarize the rollouts that finished, the
    rest listed as unfinished), and earlier: an earlier summary.json of this race, whose per-seed figures stand in
    for seeds with no rollout under out."""

    methods: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    progress: bool = True
    roll: bool = True
    earlier: str | None = None


def run_race(template: FleetConfig, out: str, plan: RacePlan = RacePlan()) -> dict[str, Any]:
    """Roll the fleet out per (seed, method), then write summary.json, report.md and race.png under out."""
    methods = tuple(dict.fromkeys(plan.methods or RACE_METHODS))
    seeds = tuple(dict.fromkeys(plan.seeds or RACE_SEEDS))
    progress, roll, earlier = plan.progress, plan.roll, plan.earlier
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise InputError("--methods", f"unknown method(s) {', '.join(unknown)}", f"choose from {', '.join(METHODS)}")
    root = check_out(out, flag="--out", inputs=fleet_inputs(template))
    root.mkdir(parents=True, exist_ok=True)
    if roll:
        check_one_revision(root, git_revision())
    started = provenance()
    for seed in seeds if roll else ():
        for method in methods:
            rollout(fleet_for(template, root, seed, method), progress=progress)
    gate = gate_of(template)
    before = earlier_summary(earlier, gate) if earlier else None
    result = summarize(root, methods, seeds, before) | {"provenance": started, "gate": gate, "run_revisions": sorted(
        set(run_revisions(root)) | set(before["run_revisions"] if before else ()))}
    if before:
        result["seeds_from_earlier"] = {"file": str(earlier), "methods": before["taken"]}
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
        "ready_share": len(ready) / n if n else None,
        "zero_step_share": sum(r["steps"] == 0 for r in ready) / n if n else None,
        "compute_s": sum(r["cpu_s"] or 0.0 for r in rows),  # CPU seconds of search + training, every service
        "wall_s": sum(r["total_s"] or 0.0 for r in rows),
        # the same compute counted, which a shared machine does not distort (None for ledgers older than it)
        "examples_scored": _total([r.get("examples_scored") for r in rows]),
        "train_tokens": _total([r.get("train_tokens") for r in rows]),
        "time_to_ready_median_s": fleet["time_to_ready_s"]["median"],
        "time_to_ready_max_s": fleet["time_to_ready_s"]["max"],
        "never_ready": sum(r["state"] != "ready" for r in rows),
        # what the services left behind cost: leaving a service out of budget must not look cheap
        "never_ready_compute_s": sum(r["cpu_s"] or 0.0 for r in rows if r["state"] != "ready"),
        # the update's strength as it measured here: the old service minus PortLLM on each gate set, in points
        "portllm_drop_points": _mean([100 * (r["old_service_val_accuracy"] - r["fallback_val_accuracy"]) for r in rows
                                      if r["old_service_val_accuracy"] is not None
                                      and r["fallback_val_accuracy"] is not None]),
        **checked_on_test(rows),
        # gate examples per service (old service + candidate, every look), and what the looks found
        "examples_per_decision": _mean([r["gate_examples_scored"] for r in rows]),
        "gate_looks": sum(r["gate_looks"] or 0 for r in rows),
        # a rejected look's cost as a share of its gate set (the target: at most a quarter)
        "rejected_look_share": _share([r["gate_reject_examples"] for r in rows],
                                      [(r["gate_rejects"] or 0) * (r["gate_examples"] or 0) for r in rows]),
        "discordance_measured": _mean([r["discordance"] for r in rows]),
        "quality_vs_old": statistics.fmean(s - r["old_service_val_accuracy"] for s, r in zip(served, rows)),
        "negative_flip_rate": statistics.fmean(r["negative_flip_rate"] for r in rows),
        # the search's share of the re-adaptation's own seconds (search + training), over the fleet
        "search_share": sum(r["search_s"] or 0.0 for r in rows) / max(sum(r["total_s"] or 0.0 for r in rows), 1e-9),
        "retention_mean": retention[0] if retention else None,
        "retention_min": retention[1] if retention else None,
        "judged_on": sorted({f"{r['judged_on']} ({r['gate_examples']})" for r in rows}),
    }


def gate_of(template: FleetConfig) -> dict[str, Any]:
    """The race's gate, as every service ran it: the test, alpha, margin and looks."""
    cfg = template.readapt_config(template.adapters[0])
    parsed = cfg.parsed_gate
    return {"test": tests.METHOD if parsed.absolute is None else tests.ONE_SAMPLE_METHOD, "alpha": cfg.gate.alpha,
            "margin": parsed.margin if parsed.absolute is None else None, "threshold": parsed.absolute,
            "looks": cfg.gate.looks, "assumed_discordance": cfg.gate.discordance, "gate_examples": cfg.data.ready_size}


def check_one_revision(root: Path, here: str | None) -> None:
    """A race rolls on only at the revision its rollouts ran at: one race result comes from one revision. A
    checkout that moved on since (a commit, or edits) would add re-adaptations of other code to the same table.
    Outside a git checkout (an installed wheel) there is no revision to compare, and nothing is refused."""
    ran = set(run_revisions(root)) - {"None"}
    if here is None or not ran or ran == {here}:
        return
    raise InputError(str(root), f"holds re-adaptations run at relora {', '.join(sorted(ran))}, and this checkout "
                     f"is {here}", "resume it from a worktree at that revision (git worktree add ../race-wt REV; "
                     "PYTHONPATH=../race-wt/src), summarize it as it is with --summary-only, or race into a new --out")


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


def _share(part: list[Any], whole: list[Any]) -> float | None:
    total = sum(w for w in whole if w)
    return sum(p for p in part if p) / total if total else None


def _mean(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def checked_on_test(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Publications checked on the test split that no search, screen or gate scored. A false publish is a
    published service whose paired 95% upper bound on test (new - old) is below -margin; its rate is over ALL
    services, so that publishing nothing cannot look safe, with a Clopper-Pearson 95% interval. The point
    estimate's count (test difference below -margin) stands beside it."""
    tested = [r for r in rows if r["test_diff"] is not None]
    if not tested:
        return {"false_publish_rate_test": None, "false_publish_interval": None, "false_publishes_test": None,
                "published_below_margin_point_test": None, "services_tested": 0}
    ready = [r for r in tested if r["state"] == "ready"]
    false = sum(r["test_upper"] < -r["gate_margin"] for r in ready)
    rate, interval = rate_with_interval(false, len(tested))
    return {"false_publish_rate_test": rate, "false_publish_interval": interval, "false_publishes_test": false,
            "services_tested": len(tested), "published_below_margin_point_test": sum(r["test_diff"] < -r["gate_margin"] for r in ready),
            "test_diff_mean_published": _mean([r["test_diff"] for r in ready])}


def _total(values: list[int | None]) -> int | None:
    """A sum that is unknown when any part is (rows from before the column)."""
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


def _over_seeds(per_seed: list[dict[str, Any]], key: str, how: str) -> float | None:
    values = [m[key] for m in per_seed if m.get(key) is not None]  # an earlier summary may lack a later key
    if not values:
        return None
    if how == "std":  # over seeds: one seed has none
        return statistics.stdev(values) if len(values) > 1 else None
    return {"median": statistics.median, "mean": statistics.fmean, "min": min, "max": max, "sum": sum}[how](values)


def earlier_summary(path: str, gate: dict[str, Any]) -> dict[str, Any]:
    """An earlier summary.json of the same race (the same gate), read for its per-seed figures: what a race
    summarized before its rollouts' folders were lost still counts, and says so."""
    try:
        found = json.loads(Path(path).read_text())
        per_seed = {m: {row["seed"]: row for row in info["per_seed"]} for m, info in found["methods"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"is not a race's summary.json ({exc})", "pass the summary.json a race wrote") from None
    if found.get("gate") != gate:
        raise InputError(path, f"was summarized under another gate ({found.get('gate')})",
                         "pass the summary of this same race, or leave out --earlier-summary")
    return {"per_seed": per_seed, "run_revisions": found.get("run_revisions", []), "taken": {}}


def summarize(root: Path, methods: tuple[str, ...], seeds: tuple[int, ...],
              earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per method: each seed's rollout figures, and medians and means over seeds. A seed with no finished
    rollout under root takes its figures from earlier (earlier_summary) when that has them."""
    out: dict[str, Any] = {"methods": {}, "seeds": list(seeds)}
    for method in methods:
        per_seed, unfinished = [], []
        for seed in seeds:
            rows = finished_rows(rollout_dir(root, seed, method) / "rollout")
            before = (earlier or {}).get("per_seed", {}).get(method, {}).get(seed)
            if rows is not None:
                per_seed.append(fleet_metrics(rows) | {"seed": seed})
            elif before is not None:
                per_seed.append(before)
                earlier["taken"].setdefault(method, []).append(seed)  # type: ignore[index]
            else:
                unfinished.append(seed)  # reported as such, never counted as services that failed the gate
        out["methods"][method] = {
            "unfinished_seeds": unfinished,
            "compute_s_median": _over_seeds(per_seed, "compute_s", "median"),
            "zero_step_share": _over_seeds(per_seed, "zero_step_share", "mean"),
            "ready_share": _over_seeds(per_seed, "ready_share", "mean"),
            "retention_mean": _over_seeds(per_seed, "retention_mean", "mean"),
            "retention_min": _over_seeds(per_seed, "retention_min", "min"),
            "false_publishes_test": _over_seeds(per_seed, "false_publishes_test", "sum"),
            "services_tested": _over_seeds(per_seed, "services_tested", "sum"),
            "published_below_margin_point_test": _over_seeds(per_seed, "published_below_margin_point_test", "sum"),
            "examples_per_decision": _over_seeds(per_seed, "examples_per_decision", "mean"),
            "compute_s_mean": _over_seeds(per_seed, "compute_s", "mean"),
            "compute_s_std": _over_seeds(per_seed, "compute_s", "std"),
            "examples_scored_mean": _over_seeds(per_seed, "examples_scored", "mean"),
            "train_tokens_mean": _over_seeds(per_seed, "train_tokens", "mean"),
            "never_ready_compute_s_mean": _over_seeds(per_seed, "never_ready_compute_s", "mean"),
            "portllm_drop_points": _over_seeds(per_seed, "portllm_drop_points", "mean"),
            "never_ready": _over_seeds(per_seed, "never_ready", "sum"),
            "time_to_ready_median_s": _over_seeds(per_seed, "time_to_ready_median_s", "median"),
            "time_to_ready_max_s": _over_seeds(per_seed, "time_to_ready_max_s", "max"),
            "quality_vs_old": _over_seeds(per_seed, "quality_vs_old", "mean"),
            "negative_flip_rate": _over_seeds(per_seed, "negative_flip_rate", "mean"),
            "per_seed": per_seed,
        }
        info = out["methods"][method]
        info["false_publish_rate_test"], info["false_publish_interval"] = pooled_rate(info)
    script = out["methods"].get(PORTLLM_FT, {}).get("compute_s_mean")
    for info in out["methods"].values():  # the bar: fine-tuning every old adapter (the simple script)
        info["compute_vs_portllm_ft"] = info["compute_s_mean"] / script if script and info["compute_s_mean"] else None
    return out


def pooled_rate(info: dict[str, Any]) -> tuple[float | None, list[float] | None]:
    """False publishes on test over every service of every seed."""
    n, k = info["services_tested"], info["false_publishes_test"]
    return rate_with_interval(int(k), int(n)) if n else (None, None)


def rate_with_interval(k: int, n: int) -> tuple[float, list[float]]:
    """k of n, with its Clopper-Pearson 95% interval."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return k / n, [float(ci.low), float(ci.high)]
