"""Does the cheaper search hold up? Full-fidelity BO against the default (screened, EI-stopped) BO.

Every run is a `relora readapt` child process on the quick benchmark's relora
cell (same bases, adapter, data and training), once per seed and variant, with
--stop-when-ready at the bench's threshold. A child has its own clock and its
own peak RSS, so each run also measures standalone readapt memory.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from relora.lab.cell import BenchCell, cells_of
from relora.core.method.methods import RELORA
from relora.core.method.record import RunRecord, read_events
from relora.io import atomic_write
from relora.tables import mean_std

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {"screen_fraction": 1.0, "ei_stop": 0.0},  # every probe on all of D_val, all T probes
    "default": {},  # the shipped defaults: screened probes, re-scoring, EI stop
}
INPUT_KEYS = ("old_base", "new_base", "adapter", "train", "val", "test", "cache_dir", "data")


def bench_relora_cell(bench_dir: Path) -> BenchCell:
    cells = cells_of(json.loads((bench_dir / "results.json").read_text()))
    return next(c for c in cells if c.cell == RELORA)


def run_config(cell: BenchCell, variant: str, seed: int, out: Path) -> dict[str, Any]:
    """The bench cell's inputs and training, a fresh search with the variant's settings."""
    old = cell.config
    training = {k: v for k, v in old["training"].items() if k != "eval_batch_size"}  # current default
    return {**{k: old[k] for k in INPUT_KEYS}, "method": RELORA, "seed": seed, "out": str(out),
            "threshold": cell.threshold, "stop_when_ready": True, "training": training,
            "search": {"trials": old["search"]["trials"], **VARIANTS[variant]}}


def readapt_child(config: dict[str, Any]) -> RunRecord:
    """`relora readapt` in its own process; skipped when its output exists (resumable)."""
    out = Path(config["out"])
    if not RunRecord.exists(out):
        path = out.with_name(out.name + ".yaml")
        atomic_write(path, yaml.safe_dump(config))
        subprocess.run([sys.executable, "-m", "relora.cli", "readapt", "--config", str(path), "--quiet"], check=True)
    return RunRecord.load(out)


def run_variant(cell: BenchCell, variant: str, seed: int, root: Path) -> dict[str, Any]:
    out = root / f"{variant}-s{seed}"
    rec = readapt_child(run_config(cell, variant, seed, out))
    first = read_events(out)[0]  # step 0: the chosen init
    bo = [p for p in rec.probes if p.log_ei is not None]
    explore = [p for p in rec.probes if p.stage == "explore"]
    return {"variant": variant, "seed": seed, "alpha": rec.alpha, "beta": rec.beta,
            "init_val_loss": first.val_loss, "init_val_accuracy": first.val_accuracy,
            "steps_to_ready": rec.steps_to_ready, "probes": len(rec.probes),
            "stopped_early": rec.search_stopped_early, "examples_scored": rec.search_examples_scored,
            "search_s": rec.search_s, "propose_s_median": median_or_none([p.propose_s for p in bo]),
            "explore_probe_s_median": median_or_none([p.eval_s for p in explore]),
            "peak_rss_mb": rec.peak_rss_mb, "threshold": rec.threshold}


def median_or_none(values: list[float]) -> float | None:
    """None when there is nothing to take a median of (EI can stop before any BO proposal)."""
    return statistics.median(values) if values else None


def run_search_check(bench_dir: Path, out: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:
    """Both variants at every seed; returns the runs and a summary per variant."""
    cell = bench_relora_cell(bench_dir)
    root = out / "search-check"
    root.mkdir(parents=True, exist_ok=True)
    runs = [run_variant(cell, variant, seed, root) for seed in seeds for variant in VARIANTS]
    summary = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        summary[variant] = {key: mean_std([r[key] for r in mine]) for key in
                            ("alpha", "beta", "init_val_loss", "init_val_accuracy", "steps_to_ready", "probes",
                             "examples_scored", "search_s")}
    return {"bench": str(bench_dir), "seeds": list(seeds), "runs": runs, "summary": summary}
