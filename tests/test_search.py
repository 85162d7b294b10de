"""BO over (alpha, beta): finds a known optimum, resumes without repeating probes."""

from __future__ import annotations

from pathlib import Path

import pytest

from relora.config import SearchConfig
from relora.search import best_probe, grid_points, initial_design, run_search

OPTIMUM = (-0.55, 1.35)


def bowl(alpha: float, beta: float) -> float:
    return 1.0 + (alpha - OPTIMUM[0]) ** 2 + 2.0 * (beta - OPTIMUM[1]) ** 2


def test_bo_finds_known_2d_optimum_within_budget() -> None:
    cfg = SearchConfig(trials=20, n_init=5)
    probes = run_search(bowl, cfg, seed=0, progress=False)
    assert len(probes) == 20
    best = best_probe(probes)
    assert abs(best.alpha - OPTIMUM[0]) < 0.1 and abs(best.beta - OPTIMUM[1]) < 0.1
    assert best.val_loss < 1.01
    # the design alone is far from that good: the GP+EI steps found it
    assert min(p.val_loss for p in probes[:5]) > best.val_loss + 0.02


def test_initial_design_starts_at_portllm_and_stays_in_box() -> None:
    cfg = SearchConfig(n_init=6)
    design = initial_design(cfg, seed=0)
    assert design[0] == (0.0, 1.0) and len(design) == 6
    assert all(-1 <= a <= 1 and 0 <= b <= 2 for a, b in design)
    assert design == initial_design(cfg, seed=0) != initial_design(cfg, seed=1)


def test_killed_search_resumes_with_the_same_probes(tmp_path: Path) -> None:
    cfg = SearchConfig(trials=9, n_init=4, raw_samples=64, num_restarts=4)
    reference = run_search(bowl, cfg, seed=5, progress=False)
    calls: list[tuple[float, float]] = []

    def dies_at_seventh(alpha: float, beta: float) -> float:
        calls.append((alpha, beta))
        if len(calls) == 7:
            raise KeyboardInterrupt
        return bowl(alpha, beta)

    store = tmp_path / "search.sqlite3"
    with pytest.raises(KeyboardInterrupt):
        run_search(dies_at_seventh, cfg, seed=5, store_path=store, progress=False)
    calls.clear()
    resumed = run_search(lambda a, b: (calls.append((a, b)), bowl(a, b))[1], cfg, seed=5, store_path=store,
                         progress=False)
    assert len(calls) == 3  # probes 7, 8, 9 only; the six finished ones were not repeated
    assert [(round(p.alpha, 6), round(p.beta, 6)) for p in resumed] == \
        [(round(p.alpha, 6), round(p.beta, 6)) for p in reference]


def test_grid_covers_the_box() -> None:
    cfg = SearchConfig(grid_size=10)
    points = grid_points(cfg)
    assert len(points) == 100 and (-1.0, 0.0) in points and (1.0, 2.0) in points
    probes = run_search(bowl, SearchConfig(grid_size=4), seed=0, kind="grid", progress=False)
    assert len(probes) == 16
