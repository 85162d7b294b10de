"""Regression guard for the performance targets on the real model (slow: scripts/test.sh -m slow)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_stages_are_never_slower_than_the_plain_way(tmp_path: Path) -> None:
    from relora.bench.perf.harness import run_perf

    rows = {r["stage"]: r for r in run_perf(str(tmp_path), bench_dir=str(tmp_path / "no-bench"), repeats=2, train_steps=4)["rows"]}
    assert rows["probe evaluation"]["speedup"] >= 1.0
    assert rows["probe evaluation"]["abs_loss_diff"] < 1e-5 and rows["probe evaluation"]["same_accuracy"]
    assert rows["delta projection"]["speedup"] >= 1.0
    assert rows["delta projection"]["mean_extra_error_points"] <= 1.0
    assert rows["training step"]["speedup"] >= 1.0
