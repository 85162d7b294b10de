"""The bench report's numbers against values computed by hand on a small synthetic results.json,
and the fleet report's Scratch estimate against a hand-computed one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relora.lab.cell import BenchCell
from relora.lab.report.tables import demo_summary, portllm_drop, quality_table, readiness_table, search_tables

# the fields no table reads, filled so that each synthetic cell is a valid BenchCell
UNREAD = {"time_to_ready_s": None, "steps_to_ready": None, "train_s": 1.0, "load_s": 0.0, "labels": ["a", "b"],
          "peak_rss_mb": 1.0, "val_correct": [], "config": {}, "hashes": {}, "git_revision": None, "packages": {},
          "zero_shot_old_base": {"val_accuracy": 0.3, "val_loss": 2.0}}


def cell(method: str, seed: int, test: float, val: float, ready_s: float | None, total_s: float,
         **extra: Any) -> BenchCell:
    return BenchCell.model_validate(UNREAD | {
        "cell": method, "method": method, "task": "wn-topic", "corpus": "news", "seed": seed,
        "metrics": {"test_accuracy": test, "val_accuracy": val, "val_loss": 1.0}, "threshold": 0.75, "ready_step": 10,
        "ready_s": ready_s, "restore_step": None, "restore_s": None, "total_s": total_s, "steps": 20,
        "probes": [], "search_s": 0.0, "alpha": None, "beta": None, "n_examples": {"val_search": 20},
        "old_adapter_old_base_val_accuracy": 0.9,
        "events": [{"step": 0, "wall_s": 0.0, "stage": 1, "train_loss": None, "val_loss": 1.0, "val_accuracy": val}],
    } | extra)


def probes(n: int) -> list[dict[str, Any]]:
    return [{"alpha": 0.0, "beta": 1.0, "val_loss": 1.0, "n_examples": n}] * 3


CELLS = [
    cell("portllm", 0, 0.70, 0.70, None, 5.0, steps=0), cell("portllm", 1, 0.80, 0.80, None, 5.0, steps=0),
    cell("scratch", 0, 0.60, 0.76, 100.0, 200.0), cell("scratch", 1, 0.70, 0.78, 120.0, 240.0),
    cell("relora-paper", 0, 0.80, 0.85, 50.0, 100.0, restore_s=90.0, alpha=0.5, beta=1.0, search_s=12.0, probes=probes(5)),
    cell("relora-paper", 1, 0.90, 0.95, 40.0, 80.0, restore_s=None, alpha=-0.5, beta=1.5, search_s=18.0, probes=probes(10)),
]


def row(lines: list[str], method: str) -> list[str]:
    found = [line for line in lines if f"| {method} |" in line]
    assert len(found) == 1, lines
    return [c.strip() for c in found[0].strip("|").split("|")]


def test_quality_table_is_mean_and_sample_std_over_seeds() -> None:
    relora = row(quality_table(CELLS), "relora-paper")
    assert relora[3:5] == ["0.850 ± 0.071", "0.900 ± 0.071"]  # (0.8, 0.9) and (0.85, 0.95): std = 0.1/sqrt(2)
    assert relora[5] == "76.6 (20News)"


def test_readiness_table_speedups_are_per_seed_ratios_against_scratch() -> None:
    relora = row(readiness_table(CELLS), "relora-paper")
    assert relora[5] == "45.0 ± 7.1"  # time to ready: 50, 40
    assert relora[6] == "2.50 ± 0.71x"  # scratch / relora per seed: 100/50 = 2, 120/40 = 3
    assert relora[8] == "90.0 (1 not reached)"  # time to old quality: one seed never got there
    assert relora[9] == "90.0 ± 14.1" and relora[10] == "2.50 ± 0.71x"  # rollout 100, 80; 200/100, 240/80


def test_old_quality_race_counts_the_seeds_that_got_back() -> None:
    from relora.lab.report.tables import old_quality_race

    ft = [cell("portllm-ft", s, 0.8, 0.9, 60.0, 150.0, restore_s=t) for s, t in ((0, 180.0), (1, 100.0))]
    relora = row(old_quality_race(CELLS + ft), "relora-paper")
    # seed 0 got back in 90 s (PortLLM+FT: 180 s, so 2x); seed 1 never did; no cell recorded its steps
    assert relora[3:7] == ["1/2", "90.0 (1 not reached)", "not reached", "2.00x"]


def test_search_table_sums_the_examples_each_probe_scored() -> None:
    relora = row(search_tables(CELLS), "relora-paper")
    assert relora[3:7] == ["3", "22 ± 11", "15.0 ± 4.2", "0.000 ± 0.707"]  # 3x5=15 and 3x10=30 examples


def test_portllm_drop_is_old_quality_minus_portllm_in_points() -> None:
    drop = row(portllm_drop(CELLS), "news")
    assert drop[2:] == ["0.900 ± 0.000", "0.750 ± 0.071", "15.0 ± 7.1"]  # 90-70 = 20, 90-80 = 10


def test_demo_summary_reads_the_first_seed(tmp_path: Path) -> None:
    lines = demo_summary({"base": "models/tiny", "cells": CELLS}, tmp_path)
    relora = next(line for line in lines[1:] if line.startswith("relora-paper "))
    assert relora.split() == ["relora-paper", "0.800", "50", "s", "2.00x", "90", "s", "100", "s"]


def test_fleet_scratch_estimate_from_hand_computed_seconds_per_step(world, tmp_path: Path) -> None:
    """Two jobs trained 5 and 15 steps in 10 s and 20 s: 1.5 s a step. Scratch retrains both for the
    full 40-step budget: 1.5 x 40 x 2 = 120 s = 0.033 h; the rollout itself measured 30 s = 0.008 h."""
    from helpers import fast_config
    from relora.core.model.config import ReadaptConfig
    from relora.core.run.readapt import readapt
    from relora.fleet.ledger import Ledger
    from relora.fleet.report import write_fleet_report

    template = readapt(ReadaptConfig(**fast_config(world, tmp_path / "one", "portllm")), progress=False)
    out = tmp_path / "rollout"
    out.mkdir()
    ledger = Ledger(f"sqlite:///{out / 'ledger.sqlite3'}")
    ledger.register(["a", "b"], {"a": "relora", "b": "relora"}, {"a": 0.5, "b": 0.5},
                    {"a": ("key-a", "{}"), "b": ("key-b", "{}")})
    config = template.config | {"training": template.config["training"] | {"steps": 40}}
    for name, steps, train_s in (("a", 5, 10.0), ("b", 15, 20.0)):
        assert ledger.claim(name, "w", 60)
        ledger.finish(name, "w", "ready", total_s=train_s, val_accuracy=0.8, negative_flip_rate=0.0,
                      time_to_ready_s=train_s)
        (out / "runs" / name).mkdir(parents=True)
        template.model_copy(update={"steps": steps, "train_s": train_s, "config": config}).save(out / "runs" / name)
    text = write_fleet_report(str(out)).read_text()
    assert "Compute: 0.008 CPU/GPU-hours" in text and "Scratch estimate 0.033 h" in text
    assert f"relora revision {template.git_revision}" in text


def test_seeds_are_paired_by_key_not_by_order() -> None:
    """PortLLM+FT's seed 0 failed and is missing: relora's seed 1 pairs with PortLLM+FT's seed 1, not with
    the first cell that happens to be there (zip order would give 180/90 = 2.00x)."""
    from relora.lab.report.tables import old_quality_race

    ft = [cell("portllm-ft", 1, 0.8, 0.9, 60.0, 150.0, restore_s=180.0)]
    relora = [cell("relora", s, 0.8, 0.9, 60.0, 150.0, restore_s=t) for s, t in ((1, 60.0), (0, 90.0))]
    got = row(old_quality_race(ft + relora), "relora")
    assert got[6:8] == ["3.00x", "3.00"]  # seed 1 only: 180 / 60
