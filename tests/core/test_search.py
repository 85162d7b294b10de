"""BO over (alpha, beta): finds a known optimum, resumes without repeating probes,
screens on part of D_val and re-scores on all of it, stops when EI is negligible."""

from __future__ import annotations

from pathlib import Path

import pytest

from relora.core.model.config import SearchConfig
from relora.core.method.search import SearchPlan, grid_points, initial_design, run_search, screen_size

OPTIMUM = (-0.55, 1.35)


def bowl(alpha: float, beta: float, n: int = 100) -> float:
    return 1.0 + (alpha - OPTIMUM[0]) ** 2 + 2.0 * (beta - OPTIMUM[1]) ** 2


def full_fidelity(**kw: float) -> SearchConfig:
    return SearchConfig(screen_fraction=1.0, ei_stop=0.0, **kw)


def test_bo_finds_known_2d_optimum_within_budget() -> None:
    result = run_search(bowl, full_fidelity(trials=20, n_init=5), SearchPlan(seed=0, n_val=100, progress=False))
    assert len(result.probes) == 20 and not result.rescored and not result.stopped_early
    best = result.best
    assert abs(best.alpha - OPTIMUM[0]) < 0.1 and abs(best.beta - OPTIMUM[1]) < 0.1
    assert best.val_loss < 1.01
    # the design alone is far from that good: the GP+EI steps found it
    assert min(p.val_loss for p in result.probes[:5]) > best.val_loss + 0.02
    assert all(p.gp_state is not None and p.log_ei is not None for p in result.probes[5:])


def test_initial_design_starts_at_portllm_and_stays_in_box() -> None:
    cfg = SearchConfig(n_init=6)
    design = initial_design(cfg, seed=0)
    assert design[0] == (0.0, 1.0) and len(design) == 6
    assert all(-1 <= a <= 1 and 0 <= b <= 2 for a, b in design)
    assert design == initial_design(cfg, seed=0) != initial_design(cfg, seed=1)


def test_screened_search_rescores_the_best_points_on_all_of_dval() -> None:
    """Exploring probes see a noisy quarter of D_val; the choice is made on all of it."""
    seen: list[int] = []

    def noisy(alpha: float, beta: float, n: int) -> float:
        seen.append(n)
        wobble = 0.05 * ((alpha * 97 + beta * 31) % 1.0) if n < 100 else 0.0  # deterministic screening noise
        return bowl(alpha, beta) + wobble

    cfg = SearchConfig(trials=12, n_init=5, screen_fraction=0.25, rescore_top=3, ei_stop=0.0)
    result = run_search(noisy, cfg, SearchPlan(seed=0, n_val=100, progress=False))
    assert seen == [25] * 12 + [100] * 3
    assert [p.stage for p in result.probes] == ["explore"] * 12 + ["rescore"] * 3
    assert result.best in result.rescored and result.best.val_loss == min(p.val_loss for p in result.rescored)
    assert result.examples_scored == 12 * 25 + 3 * 100


def test_ei_stop_ends_the_search_before_the_budget_on_an_easy_bowl() -> None:
    loose = run_search(bowl, SearchConfig(trials=30, n_init=5, screen_fraction=1.0, ei_stop=0.05),
                       SearchPlan(seed=0, n_val=100, progress=False))
    never = run_search(bowl, full_fidelity(trials=30, n_init=5), SearchPlan(seed=0, n_val=100, progress=False))
    assert loose.stopped_early and len(loose.probes) < 30 and len(never.probes) == 30
    path = [(p.alpha, p.beta) for p in never.probes[: len(loose.probes)]]
    assert [(p.alpha, p.beta) for p in loose.probes] == path  # same path until it stops
    assert loose.best.val_loss < 1.05


def test_killed_search_resumes_with_the_same_probes(tmp_path: Path) -> None:
    cfg = SearchConfig(trials=9, n_init=4, raw_samples=64, screen_fraction=0.5, rescore_top=2, ei_stop=0.0)
    reference = run_search(bowl, cfg, SearchPlan(seed=5, n_val=40, progress=False))
    calls: list[tuple[float, float, int]] = []

    def dies_at_seventh(alpha: float, beta: float, n: int) -> float:
        calls.append((alpha, beta, n))
        if len(calls) == 7:
            raise KeyboardInterrupt
        return bowl(alpha, beta)

    store = tmp_path / "search.sqlite3"
    with pytest.raises(KeyboardInterrupt):
        run_search(dies_at_seventh, cfg, SearchPlan(seed=5, n_val=40, store_path=store, progress=False))
    calls.clear()
    resumed = run_search(lambda a, b, n: (calls.append((a, b, n)), bowl(a, b))[1], cfg,
                         SearchPlan(seed=5, n_val=40, store_path=store, progress=False))
    assert [n for _, _, n in calls] == [20, 20, 20, 40, 40]  # probes 7-9 and the re-scores; six not repeated
    key = [(round(p.alpha, 6), round(p.beta, 6), p.n_examples, p.stage) for p in resumed.probes]
    assert key == [(round(p.alpha, 6), round(p.beta, 6), p.n_examples, p.stage) for p in reference.probes]


def test_grid_covers_the_box_at_full_fidelity() -> None:
    cfg = SearchConfig(grid_size=10)
    points = grid_points(cfg)
    assert len(points) == 100 and (-1.0, 0.0) in points and (1.0, 2.0) in points
    result = run_search(bowl, SearchConfig(grid_size=4), SearchPlan(seed=0, n_val=100, kind="grid", progress=False))
    assert len(result.probes) == 16 and all(p.n_examples == 100 for p in result.probes)
    assert screen_size(SearchConfig(), 128, "bo") == 32 and screen_size(SearchConfig(), 128, "grid") == 128


def test_two_searches_on_one_store_do_not_interleave(tmp_path: Path) -> None:
    """Two fleet workers with identical inputs share a store: the second waits and reuses."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = SearchConfig(trials=6, n_init=3, raw_samples=64, screen_fraction=1.0, ei_stop=0.0)
    calls: list[tuple[float, float]] = []

    def counted(alpha: float, beta: float, n: int) -> float:
        calls.append((alpha, beta))
        return bowl(alpha, beta)

    store = tmp_path / "shared.sqlite3"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run_search(counted, cfg, SearchPlan(seed=0, n_val=100, store_path=store, progress=False)), [0, 1]))
    assert len(calls) == 6  # not 12, and no probe evaluated twice
    assert [(p.alpha, p.beta) for p in results[0].probes] == [(p.alpha, p.beta) for p in results[1].probes]


def test_search_check_reads_a_run_whose_search_made_no_bo_proposal(world, tmp_path: Path) -> None:
    """EI may stop right after the initial design; the check must report it, not crash on an empty median."""
    from helpers import fast_config
    from relora.lab.cell import BenchCell
    from relora.lab.search_check import run_variant
    from relora.core.model.config import ReadaptConfig
    from relora.core.run.readapt import readapt
    from relora.core.method.search import Probe

    out = tmp_path / "search-check" / "default-s0"
    template = readapt(ReadaptConfig(**fast_config(world, tmp_path / "template", "portllm")), progress=False)
    initial = Probe(alpha=0.0, beta=1.0, val_loss=0.5, eval_s=1.5, n_examples=8)
    out.mkdir(parents=True)
    template.model_copy(update={"probes": [initial], "search_stopped_early": True, "search_examples_scored": 8,
                                "search_s": 1.5}).save(out)
    (out / "events.jsonl").write_text((tmp_path / "template" / "events.jsonl").read_text())
    inputs = dict.fromkeys(("old_base", "new_base", "adapter", "train", "val", "test", "cache_dir", "data"), "x")
    cell = BenchCell.model_validate(template.model_dump() | {
        "config": {**inputs, "training": {}, "search": {"trials": 4}}, "threshold": 0.5, "cell": "relora",
        "events": [], "corpus": "news", "task": "t", "ready_step": None, "ready_s": None, "restore_step": None,
        "restore_s": None, "old_adapter_old_base_val_accuracy": 0.9, "zero_shot_old_base": template.metrics})
    row = run_variant(cell, "default", 0, tmp_path / "search-check")
    assert row["propose_s_median"] is None and row["explore_probe_s_median"] == 1.5 and row["stopped_early"]


def test_every_search_a_method_or_the_config_can_name_is_a_registered_strategy_object() -> None:
    """Searches are looked up by name (search/registry.py), each a SearchStrategy in a file of its own."""
    import typing

    from relora.core.method.init import SearchedFusion
    from relora.core.method.methods import METHODS
    from relora.core.method.search.registry import SEARCHES, search_for
    from relora.core.method.search.strategy import SearchStrategy
    from relora.core.model.config import SearchConfig

    literal = [a for a in typing.get_args(SearchConfig.model_fields["strategy"].annotation) if a is not type(None)]
    config_names = {n for arg in literal for n in typing.get_args(arg)}
    method_names = {m.init.search for m in METHODS.values() if isinstance(m.init, SearchedFusion)}
    assert config_names | method_names == set(SEARCHES) == {"bo", "grid", "gradient"}
    assert all(isinstance(s, SearchStrategy) and s.name == n for n, s in SEARCHES.items())
    assert len({type(s).__module__ for s in SEARCHES.values()}) == len(SEARCHES)  # one file each
    with pytest.raises(ValueError, match="choose from bo, grid, gradient"):
        search_for("random")
