"""Regression guard for the performance figures the docs quote (slow: scripts/test.sh -m slow).

Each stage's speed-up is checked against the committed figure in docs/results/perf/perf.json, the file that
docs/results/README.md and docs/performance.md quote: a re-run must reach most of it (timing on a
shared 2-core machine varies by tens of percent, so the bar is 70% of the quoted speed-up, and always
above 1: never slower than the plain way)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QUOTED = Path(__file__).resolve().parents[2] / "docs" / "results" / "perf" / "perf.json"
SHARE_OF_QUOTED = 0.7


@pytest.mark.slow
def test_stages_keep_most_of_their_quoted_speedups(tmp_path: Path) -> None:
    from relora.lab.perf.harness import PerfInputs, run_perf

    quoted = {r["stage"]: r for r in json.loads(QUOTED.read_text())["rows"]}
    rows = {r["stage"]: r for r in run_perf(str(tmp_path), PerfInputs(bench_dir=str(tmp_path / "no-bench")), repeats=2,
                                                        train_steps=4)["rows"]}
    for stage in ("probe evaluation", "delta projection", "training step"):
        bar = max(1.0, SHARE_OF_QUOTED * quoted[stage]["speedup"])
        assert rows[stage]["speedup"] >= bar, (stage, rows[stage]["speedup"], quoted[stage]["speedup"])
    assert rows["probe evaluation"]["abs_loss_diff"] < 1e-5 and rows["probe evaluation"]["same_accuracy"]
    assert rows["delta projection"]["mean_extra_error_points"] <= 1.0
