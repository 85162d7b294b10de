"""`relora status OUT` and `relora report OUT`: read the ledger, never write it."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from relora.core.method.record import RunRecord
from relora.errors import InputError
from relora.io import atomic_write
from relora.tables import markdown_table
from relora.fleet.ledger import Ledger
from relora.fleet.page import write_fleet_page

COLUMNS = ("name", "state", "method", "attempts", "old_service_val_accuracy", "fallback_val_accuracy", "val_accuracy",
           "gate_verdict", "gate_margin", "gate_alpha", "gate_looks", "gate_lower", "gate_examples_scored", "test_diff",
           "negative_flip_rate", "retention", "steps", "probes", "time_to_ready_s", "total_s", "alpha", "beta",
           "judged_on", "gate_examples", "device")


def open_ledger(out: str, url: str | None = None) -> Ledger:
    path = Path(out) / "ledger.sqlite3"
    if url is None and not path.is_file():
        raise InputError(path, "no ledger here", "pass the out: directory of a rollout (or --ledger URL)")
    return Ledger(url or f"sqlite:///{path.resolve()}")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def status_table(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [list(COLUMNS)] + [[_fmt(r[c]) for c in COLUMNS] for r in rows]


def state_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["state"] for r in rows))


def status_lines(rows: list[dict[str, Any]]) -> str:
    """The terminal summary: counts by state, then the ledger table."""
    head = ", ".join(f"{k} {v}" for k, v in sorted(state_counts(rows).items())) or "no services"
    return f"{head}\n\n{markdown_table(status_table(rows))}"


def run_records(out: Path, rows: list[dict[str, Any]]) -> dict[str, RunRecord]:
    """Each finished job's relora.json, by adapter name."""
    found = {}
    for r in rows:
        run_dir = out / "runs" / r["name"]
        if r["total_s"] is not None and RunRecord.exists(run_dir):
            found[r["name"]] = RunRecord.load(run_dir)
    return found


def seconds_per_step(records: list[RunRecord]) -> tuple[float | None, int | None]:
    """Measured training seconds per optimizer step over the jobs that trained, and their step budget.
    Read from each job's relora.json, because a job that stops when ready trains fewer steps."""
    trained = [rec for rec in records if rec.steps > 0]
    budget = records[0].config["training"]["steps"] if records else None
    steps = sum(rec.steps for rec in trained)
    return (sum(rec.train_s for rec in trained) / steps if steps else None), budget


def provenance_line(records: list[RunRecord]) -> str:
    """The code, packages and inputs the rollout's jobs ran with (one value each when they agree)."""
    def values(get: Any) -> str:
        return ", ".join(sorted({str(get(rec)) for rec in records})) or "-"

    return (f"Provenance: relora revision {values(lambda r: r.git_revision)}; "
            + "; ".join(f"{pkg} {values(lambda r, pkg=pkg: r.packages.get(pkg))}" for pkg in ("torch", "transformers", "peft"))
            + f"; old base {values(lambda r: r.hashes.get('old_base', '-')[:12])}, "
            f"new base {values(lambda r: r.hashes['new_base'][:12])} (sha256 prefixes)")


def summary(rows: list[dict[str, Any]], scratch_steps: int | None, per_step_s: float | None = None) -> dict[str, Any]:
    counts = state_counts(rows)
    done = [r for r in rows if r["total_s"] is not None]
    ready_times = sorted(r["time_to_ready_s"] for r in done if r["time_to_ready_s"] is not None)
    cpu_hours = sum(r["total_s"] for r in done) / 3600
    out = {"counts": counts, "compute_hours": cpu_hours,
           "time_to_ready_s": {"median": statistics.median(ready_times) if ready_times else None,
                               "max": ready_times[-1] if ready_times else None, "n": len(ready_times)},
           "mean_negative_flip_rate": statistics.fmean(r["negative_flip_rate"] for r in done) if done else None,
           "ready_at_zero_steps": sum(r["state"] == "ready" and r.get("steps") == 0 for r in done),
           "retention": retention_summary(done), "judged_on": judged_line(done),
           "probes": probes_by_seeding(done)}
    if scratch_steps and per_step_s:
        # Scratch baseline estimate: every adapter retrained for the full E_total steps at this
        # rollout's measured seconds per step, with no search. It is a lower bound for Scratch.
        out["scratch_estimate_hours"] = per_step_s * scratch_steps * len(rows) / 3600
    return out


def retention_summary(done: list[dict[str, Any]]) -> tuple[float, float, int] | None:
    """(mean, worst, services measured) of the update kept; None when no job had an update probe."""
    values = [r["retention"] for r in done if r.get("retention") is not None]
    return (statistics.fmean(values), min(values), len(values)) if values else None


def judged_line(done: list[dict[str, Any]]) -> str:
    """Which examples judged readiness, the gates, flips and the old service, and how many per service."""
    kinds = sorted({f"{r.get('judged_on') or 'D_val'} ({r.get('gate_examples') or '?'} examples)" for r in done})
    return ", ".join(kinds) or "-"


def probes_by_seeding(done: list[dict[str, Any]]) -> dict[str, tuple[float, int] | None]:
    """Mean probes per searched adapter, apart for searches the fleet's earlier searches seeded and those
    that started with none (the first on this base update), as (mean, adapters)."""
    out: dict[str, tuple[float, int] | None] = {}
    for key, picked in (("without", [r for r in done if r.get("known_earlier") == 0]),
                        ("with", [r for r in done if (r.get("known_earlier") or 0) > 0])):
        counts = [r["probes"] for r in picked if r.get("probes")]
        out[key] = (statistics.fmean(counts), len(counts)) if counts else None
    return out


def _retention_line(retention: tuple[float, float, int] | None) -> str:
    if retention is None:
        return "Update retention: not measured (no update_probe)"
    mean, worst, n = retention
    return (f"Update retention (1: the update kept as PortLLM keeps it, 0: reverted): mean {mean:.3f}, "
            f"worst {worst:.3f} over {n} services")


def _probes_line(info: dict[str, Any], n: int) -> str:
    def part(key: str, what: str) -> str:
        value = info["probes"][key]
        return f"{what}: " + ("-" if value is None else f"{value[0]:.1f} over {value[1]} adapters")

    return (f"Ready with zero training steps (the searched init already met the gate): {info['ready_at_zero_steps']} "
            f"of {n} adapters. Probes per adapter, {part('without', 'no earlier search on this update')}; "
            f"{part('with', 'seeded by earlier searches')}")


def fleet_state(out: str, scratch_steps: int | None = None, url: str | None = None,
                ) -> tuple[list[dict[str, Any]], dict[str, RunRecord], dict[str, Any]]:
    """The ledger's rows, each finished job's record and the fleet summary: what every view shows."""
    rows = open_ledger(out, url).rows()
    by_name = run_records(Path(out), rows)
    per_step_s, budget = seconds_per_step(list(by_name.values()))
    return rows, by_name, summary(rows, scratch_steps or budget, per_step_s)


def write_page(out: str, scratch_steps: int | None = None, url: str | None = None) -> Path:
    """OUT/report/index.html alone (a rollout writes it when it ends; `relora report` writes it with the rest)."""
    rows, by_name, info = fleet_state(out, scratch_steps, url)
    return write_fleet_page(rows, by_name, Path(out), info, provenance_line(list(by_name.values())))


def write_fleet_report(out: str, scratch_steps: int | None = None, url: str | None = None) -> Path:
    rows, by_name, info = fleet_state(out, scratch_steps, url)
    records = list(by_name.values())
    table = status_table(rows)
    root = Path(out)
    plots = _plots(rows, root)
    scratch = info.get("scratch_estimate_hours")
    text = [
        "# relora fleet report", "",
        "States: " + ", ".join(f"{k} {v}" for k, v in sorted(info["counts"].items())), "",
        f"Compute: {info['compute_hours']:.3f} CPU/GPU-hours for the rollout (search + training)"
        + (f"; Scratch estimate {scratch:.3f} h (same steps, no search)" if scratch is not None else ""), "",
        f"Time to ready: median {_fmt(info['time_to_ready_s']['median'])} s, max {_fmt(info['time_to_ready_s']['max'])} s "
        f"over {info['time_to_ready_s']['n']} adapters", "",
        f"Readiness, gates, flips and the old service judged on: {info['judged_on']}", "",
        f"Mean negative-flip rate (old service right, new one wrong): {_fmt(info['mean_negative_flip_rate'])}", "",
        _retention_line(info["retention"]), "",
        _probes_line(info, len(rows)), "",
        "Below-threshold adapters are not published; their service keeps the old adapter (PortLLM fallback), whose "
        "measured quality is `fallback_val_accuracy`.", "",
        provenance_line(records), "",
        markdown_table(table), "", *[f"![{p.stem}]({p.name})" for p in plots], "",
    ]
    atomic_write(root / "fleet_report.md", "\n".join(text))
    write_fleet_page(rows, by_name, root, info, provenance_line(records))
    return root / "fleet_report.md"


def _plots(rows: list[dict[str, Any]], root: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["val_accuracy"] is not None]
    if not done:
        return []
    fig, ax = plt.subplots(figsize=(max(6, len(done) * 0.8), 4))
    x = range(len(done))
    for offset, key, label in ((-0.27, "old_service_val_accuracy", "old base + old adapter"),
                               (0.0, "fallback_val_accuracy", "new base + old adapter (PortLLM)"),
                               (0.27, "val_accuracy", "new base + re-adapted")):
        ax.bar([i + offset for i in x], [r[key] or 0 for r in done], width=0.27, label=label)
    ax.set_xticks(list(x), [r["name"] for r in done], rotation=45, ha="right")
    ax.set(ylabel="validation accuracy", title="Quality before and after the base update")
    ax.legend(fontsize=8)
    fig.tight_layout()
    quality = root / "fleet_quality.png"
    fig.savefig(quality, dpi=110)
    plt.close(fig)
    paths = [quality]
    times = [r["time_to_ready_s"] for r in done if r["time_to_ready_s"] is not None]
    if times:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(times, bins=min(20, max(3, len(times))), color="steelblue")
        ax.set(xlabel="time to ready (s)", ylabel="adapters", title="Time-to-readiness distribution")
        fig.tight_layout()
        paths.append(root / "fleet_time_to_ready.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
