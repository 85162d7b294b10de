"""portllm-ft-powered through the real CLI: the same start and training as portllm-ft, but a checkpoint reaches the
gate only where the gate is powered (D_val at least old - (margin - certifiable)), and a look gives up 0.01 below
the old service unless the config says otherwise. portllm-ft-sliding: the same bar at step 0, falling linearly to
the margin's at the budget's end."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import fast_config
from relora.cli import main
from relora.core.model.config import ReadaptConfig
from relora.core.run.gate_plan import plan_gate
from relora.core.method.methods import METHODS
from relora.core.method.readiness import LookPolicy, Readiness
from relora.core.method.measures import GateRecord
from relora.core.method.record import RunRecord

MARGIN = 0.3


def _readapt(world, out: Path, method: str, *extra: str) -> RunRecord:
    """`relora readapt` in this process (the console script itself is smoke-tested in test_cli.py)."""
    done = CliRunner().invoke(main, ["readapt", "--method", method, "--old-base", str(world.old_base),
                                     "--new-base", str(world.new_base), "--adapter", str(world.adapter),
                                     "--train", str(world.train), "--val", str(world.val), "--out", str(out),
                                     "--threshold", f"old - {MARGIN}", "--stop-when-ready",
                                     f"cache_dir={world.root / 'cache'}", "gate.allow_underpowered=true",
                                     "gate.discordance=0.1", "training.steps=8", "training.eval_every=2", "--quiet",
                                     *extra])
    assert done.exit_code == 0, done.output
    return RunRecord.load(out)


def test_the_screen_slack_is_what_the_gate_cannot_certify() -> None:
    margin, powered = LookPolicy(screen="margin"), LookPolicy(screen="powered")
    assert margin.screen_slack(0.05, 0.04) == 0.05
    assert powered.screen_slack(0.05, 0.04) == pytest.approx(0.01)
    assert powered.screen_slack(0.05, 0.06) == 0.0  # an underpowered gate: only at the old service's own D_val
    assert powered.screen_slack(0.05, None) == 0.0
    assert METHODS["portllm-ft-powered"].looks == LookPolicy(screen="powered", futility=0.01)
    assert METHODS["portllm-ft"].looks == LookPolicy()
    sliding = LookPolicy(screen="sliding")
    assert sliding.screen_slack(0.05, 0.04) == pytest.approx(0.01) and sliding.end_slack(0.05, 0.04) == 0.05
    assert powered.end_slack(0.05, 0.04) == pytest.approx(0.01) and margin.end_slack(0.05, 0.04) == 0.05
    assert METHODS["portllm-ft-sliding"].looks == LookPolicy(screen="sliding", futility=0.01)


def _record(**fields: object) -> GateRecord:
    return GateRecord(test="t", kind="paired", alpha=0.05, looks_planned=3, alpha_per_look=0.05 / 3, margin=0.05,
                      threshold=None, chunk=32, gate_examples=64, old_gate_accuracy=None, old_dval_accuracy=0.6,
                      certifiable_margin=0.05, assumed_discordance=0.2, **fields)


def test_a_sliding_bar_falls_linearly_over_the_budget_and_a_fixed_one_stays() -> None:
    def ready(record: GateRecord) -> Readiness:
        return Readiness(gate=None, record=record, items=[], old=None, pad_id=0)  # type: ignore[arg-type]

    sliding = ready(_record(screen="sliding", screen_bar=0.6, screen_bar_end=0.55))
    assert [sliding.bar_at(p) for p in (0.0, 0.5, 1.0)] == pytest.approx([0.6, 0.575, 0.55])
    assert sliding.bar_at(1.5) == pytest.approx(0.55) and sliding.bar_at(-1.0) == pytest.approx(0.6)
    fixed = ready(_record(screen="powered", screen_bar=0.6))
    assert fixed.bar_at(0.0) == fixed.bar_at(1.0) == 0.6


def test_powered_screen_sets_a_stricter_bar_and_every_look_clears_it(world, tmp_path: Path) -> None:
    plain = _readapt(world, tmp_path / "plain", "portllm-ft").gate
    powered = _readapt(world, tmp_path / "powered", "portllm-ft-powered").gate
    assert plain.screen == "margin" and powered.screen == "powered"
    assert plain.old_dval_accuracy == powered.old_dval_accuracy  # the same old service on the same D_val
    assert plain.screen_bar == pytest.approx(plain.old_dval_accuracy - MARGIN)
    slack = max(0.0, MARGIN - powered.certifiable_margin) if powered.certifiable_margin is not None else 0.0
    assert powered.screen_bar == pytest.approx(powered.old_dval_accuracy - slack)
    assert powered.screen_bar > plain.screen_bar  # the tiny gate certifies no margin near 0.3: a stricter bar
    assert plain.futility is None and powered.futility == 0.01
    assert plain.screen_bar_end is None and powered.screen_bar_end is None  # fixed bars: none falls over the budget
    for gate in (plain, powered):
        assert all(look.screen_accuracy >= gate.screen_bar for look in gate.looks)


def test_the_configs_futility_wins_over_the_methods(world, tmp_path: Path) -> None:
    """The gate's plan, before any compute (the CLI run above records the method's own futility)."""
    def planned(**gate: object) -> GateRecord:
        cfg = ReadaptConfig(**fast_config(world, tmp_path / "o", "portllm-ft-powered", threshold=f"old - {MARGIN}",
                                          stop_when_ready=True, gate={"allow_underpowered": True, **gate}))
        record = plan_gate(cfg, n_gate=48)
        assert record is not None and record.screen == "powered"
        return record

    assert planned().futility == 0.01
    assert planned(futility=0.2).futility == 0.2
    assert planned(futility=0.5).futility == MARGIN  # a look never gives up further below than the margin


def test_a_sliding_screen_starts_at_the_powered_bar_and_every_look_clears_the_bar_of_its_step(world,
                                                                                           tmp_path: Path) -> None:
    sliding = _readapt(world, tmp_path / "sliding", "portllm-ft-sliding").gate
    assert sliding.screen == "sliding" and sliding.futility == 0.01
    slack = max(0.0, MARGIN - sliding.certifiable_margin) if sliding.certifiable_margin is not None else 0.0
    assert sliding.screen_bar == pytest.approx(sliding.old_dval_accuracy - slack)  # the powered bar
    assert sliding.screen_bar_end == pytest.approx(sliding.old_dval_accuracy - MARGIN)
    readiness = Readiness(gate=None, record=sliding, items=[], old=None, pad_id=0)  # type: ignore[arg-type]
    # the fixture's D_val never reaches the powered bar: every look here is one the powered screen would not take
    assert sliding.looks and all(look.screen_accuracy < sliding.screen_bar for look in sliding.looks)
    for look in sliding.looks:
        assert look.bar == pytest.approx(readiness.bar_at(look.step / 8))  # training.steps=8 above
        assert sliding.screen_bar_end <= look.bar <= sliding.screen_bar and look.screen_accuracy >= look.bar
