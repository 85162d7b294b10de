"""What relora adds to the paper's algorithm: known starting points, the old adapter's factor balance,
a decoupled anchor, and readiness judged on examples the search never scored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import copy_adapter, fast_config
from relora.core.model.config import ReadaptConfig, SearchConfig
from relora.core.math.ops import LowRank, rebalance
from relora.core.run.readapt import readapt
from relora.core.method.record import read_events
from relora.core.method.search.gp import initial_design
from relora.core.method.search.known import REVERT, known_points


def _run(world, out: Path, method: str, **extra):
    return readapt(ReadaptConfig(**fast_config(world, out, method, **extra)), progress=False)


def test_rebalance_keeps_the_product_and_copies_the_ratio() -> None:
    gen = torch.Generator().manual_seed(0)
    fused = LowRank(B=torch.randn(12, 4, generator=gen), A=torch.randn(4, 9, generator=gen))
    old = LowRank(B=torch.randn(12, 4, generator=gen) * 0.01, A=torch.randn(4, 9, generator=gen))
    out = rebalance(fused, old)
    assert torch.allclose(out.dense(), fused.dense(), atol=1e-6)
    assert abs(float(out.B.norm() / out.A.norm()) - float(old.B.norm() / old.A.norm())) < 1e-6
    zero_b = LowRank(B=torch.zeros(12, 4), A=torch.randn(4, 9, generator=gen))
    assert rebalance(zero_b, old) is zero_b  # a zero factor has no ratio to copy


def test_known_points_come_right_after_portllm_and_grow_with_each_search(world, tmp_path: Path) -> None:
    """Another adapter's search on the same base update seeds the next design (with a smaller budget);
    an adapter's own earlier search never seeds it."""
    cfg = SearchConfig(trials=6, n_init=4)
    design = initial_design(cfg, 0, [REVERT, (0.3, 1.2)])
    assert design[:3] == [(0.0, 1.0), REVERT, (0.3, 1.2)] and len(design) == 4
    cache = tmp_path / "cache"
    record = _run(world, tmp_path / "first", "relora-bo", cache_dir=str(cache))
    pair = (record.hashes["old_base"], record.hashes["new_base"])
    point = (record.alpha, record.beta)
    assert known_points(cache, "relora-bo", *pair) == ([REVERT] if point == REVERT else [REVERT, point])
    assert known_points(cache, "relora-bo", *pair, record.hashes["adapter"]) == [REVERT]  # not its own answer
    assert record.search_known_earlier == 0
    other = copy_adapter(world.adapter, tmp_path / "other-adapter")
    second = _run(world, tmp_path / "second", "relora-bo", cache_dir=str(cache), seed=1, adapter=str(other),
                  search={"trials": 12, "n_init": 3, "seeded_trials": 4, "raw_samples": 32, "ei_stop": 0})
    first_points = [(p.alpha, p.beta) for p in second.probes[:3]]
    assert first_points[:2] == [(0.0, 1.0), REVERT]
    assert point != REVERT  # seeded: the first search ends away from the revert point, so its seeding shows
    assert point == first_points[2] and second.search_known_earlier == 1
    assert len([p for p in second.probes if p.stage == "explore"]) == 4  # seeded_trials, not trials


def test_relora_starts_from_the_old_adapters_balance(world, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from relora.core.model.adapter import read_adapter

    _run(world, tmp_path / "r", "relora", training={"steps": 0})
    _run(world, tmp_path / "p", "relora-paper", training={"steps": 0})
    old = read_adapter(world.adapter)
    for out, matches in ((tmp_path / "r", True), (tmp_path / "p", False)):
        weights = load_file(out / "adapter_model.safetensors")
        module = sorted(old.factors)[0]
        key = f"base_model.model.{module}.lora_"
        ratio = float(weights[key + "B.weight"].norm() / weights[key + "A.weight"].norm())
        old_ratio = float(old.factors[module].B.norm() / old.factors[module].A.norm())
        assert (abs(ratio - old_ratio) < 1e-4 * old_ratio) == matches


def test_decoupled_anchor_at_the_default_lambda_moves_the_factors_but_barely_the_loss(world, tmp_path: Path) -> None:
    """At the default lambda (1e-3) the decoupled anchor pulls the factors toward the init, measurably, but the
    loss moves by less than 1e-4 (as the anchor sweep found on the real model); at lambda 100 it holds them."""
    from safetensors.torch import load_file

    cache = str(tmp_path / "cache")
    base = fast_config(world, tmp_path, "relora-paper")["training"]
    anchored = _run(world, tmp_path / "a", "relora-paper", cache_dir=cache, training=base | {"anchor": "decoupled"})
    plain = _run(world, tmp_path / "b", "relora-no-sreg", cache_dir=cache, training=base | {"anchor": "decoupled"})
    assert anchored.config["training"]["lambda1"] == 1e-3  # the default
    a, b = load_file(tmp_path / "a" / "adapter_model.safetensors"), load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) > 1e-7  # the anchor acted on the factors
    assert abs(read_events(tmp_path / "a")[-1].val_loss - read_events(tmp_path / "b")[-1].val_loss) < 1e-4
    strong = _run(world, tmp_path / "s", "relora-paper", cache_dir=cache,
                  training=base | {"anchor": "decoupled", "lambda1": 100.0, "lambda2": 100.0})
    # lr 5e-3 x lambda 100 = 0.5 of the way back to the init each step: it barely moves
    assert abs(strong.metrics.val_loss - read_events(tmp_path / "s")[0].val_loss) < \
        abs(plain.metrics.val_loss - read_events(tmp_path / "b")[0].val_loss)


def test_readiness_is_judged_on_examples_the_search_never_scored(world, tmp_path: Path) -> None:
    from relora.core.model.data import read_jsonl
    from relora.core.run.inputs import d_val, readiness_set

    cfg = ReadaptConfig(**fast_config(world, tmp_path / "x", "relora", data={"val_size": 16, "ready_size": 24}))
    items = list(range(len(read_jsonl(world.val))))  # any items: the split is by position
    searched, ready = d_val(items, cfg), readiness_set(items, cfg)
    assert len(searched) == 16 and len(ready) == 24 and not set(searched) & set(ready)
    record = _run(world, tmp_path / "r", "relora", data={"val_size": 16, "ready_size": 24})
    assert record.n_examples["val_search"] == 16 and record.n_examples["val_ready"] == 24
    assert len(record.val_correct) == 16 and {p.n_examples for p in record.probes} <= {4, 16}


@pytest.mark.parametrize("gradient_lr, learns", [(0.03, True), (0.1, False)])
def test_gradient_strategy_keeps_the_learned_point_only_when_it_lowers_validation_loss(
        world, tmp_path: Path, gradient_lr: float, learns: bool) -> None:
    """Per-group coefficients learned from the best screened point. On the tiny fixtures a step size of 0.03
    lowers D_val's loss, and the learned coefficients are kept; 0.1 overshoots, and the guard keeps the start.
    Either way the adapter saved is the one the record describes."""
    cache = str(tmp_path / "cache")
    bo = _run(world, tmp_path / "bo", "relora-bo", cache_dir=cache, training={"steps": 0})
    grad = _run(world, tmp_path / "grad", "relora", cache_dir=str(tmp_path / "cache2"), training={"steps": 0},
                search={"trials": 6, "n_init": 3, "gradient_steps": 6, "gradient_lr": gradient_lr})
    assert grad.search_strategy == "gradient" and bo.search_strategy == "bo"
    learned = [p for p in grad.probes if p.stage == "gradient"]
    assert len(learned) == 1 and learned[0].n_examples == grad.n_examples["val_search"]  # judged on all of D_val
    scored = sum(p.n_examples for p in grad.probes) + 6 * grad.config["training"]["batch_size"]
    assert grad.search_examples_scored == scored  # the gradient steps' training batches count as scored
    start = min((p for p in grad.probes if p.stage == "rescore"), key=lambda p: p.val_loss)
    assert (grad.coefficients is not None) == learns
    if learns:
        assert learned[0].val_loss < start.val_loss
        assert grad.metrics.val_loss == pytest.approx(learned[0].val_loss, rel=1e-5)
        assert len(grad.coefficients) == 2 * 2  # 2 layers x (q_proj, v_proj) in the tiny model
    else:  # the guard kept the start
        assert learned[0].val_loss >= start.val_loss and (grad.alpha, grad.beta) == (start.alpha, start.beta)
        assert grad.metrics.val_loss == pytest.approx(start.val_loss, rel=1e-5)


def test_groups_name_layers_and_module_types() -> None:
    from relora.core.method.search.gradient import group_of

    name = "model.layers.12.self_attn.q_proj"
    assert [group_of(name, g) for g in ("global", "type", "layer", "layer-type")] == ["all", "q_proj", "12", "12.q_proj"]


def test_search_stops_when_a_rescored_candidate_is_ready(world, tmp_path: Path) -> None:
    """With stop-when-ready and a threshold the design already meets, the search re-scores the design's
    best point, stops there, and the run publishes with zero training steps."""
    cfg = SearchConfig(trials=12, n_init=3, screen_fraction=0.5, raw_samples=32)
    from relora.core.method.search import SearchPlan, run_search

    calls: list[int] = []

    def bowl(a: float, b: float, n: int) -> tuple[float, float]:
        calls.append(n)
        return (a + 0.5) ** 2 + (b - 1) ** 2, 0.9 if n == 100 else 0.5

    ready = run_search(bowl, cfg, SearchPlan(seed=0, n_val=100, progress=False, ready_at=0.8))
    assert ready.ready is not None and ready.best is ready.ready and calls == [50, 50, 50, 100]
    calls.clear()
    never = run_search(bowl, cfg, SearchPlan(seed=0, n_val=100, progress=False, ready_at=0.95))
    assert never.ready is None and len(calls) > 4
    record = _run(world, tmp_path / "r", "relora-bo", threshold=0.05, stop_when_ready=True,
                  cache_dir=str(tmp_path / "c"))
    assert record.steps == 0 and record.steps_to_ready == 0
    assert [p.stage for p in record.probes] == ["explore"] * 3 + ["rescore"]
    grad = _run(world, tmp_path / "g", "relora", threshold=0.05, stop_when_ready=True, cache_dir=str(tmp_path / "c2"))
    assert grad.steps == 0 and [p.stage for p in grad.probes] == ["explore"] * 2 + ["rescore"]  # no gradient steps
