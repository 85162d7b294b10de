"""The gate through the real CLI: an underpowered gate is refused in one line before any work, the opt-out runs
it and says so, and every decision is recorded with its test, alpha, margin, looks and examples."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import RELORA, write_fleet
from relora.cli import main
from relora.core.method.record import RunRecord
from relora.core.run.old_scores import ScoreMemo
from relora.fleet.ledger import Ledger


def _relative_fleet(world, tmp_path: Path, **readapt: object) -> Path:
    path = write_fleet(world, tmp_path, n=2)
    fleet = yaml.safe_load(path.read_text())
    fleet["defaults"]["threshold"] = "old - 0.05"
    fleet["defaults"]["method"] = "portllm-ft"
    fleet["defaults"]["readapt"] |= {"stop_when_ready": True} | readapt
    path.write_text(yaml.safe_dump(fleet))
    return path


def test_an_underpowered_gate_is_refused_before_any_job(world, tmp_path: Path) -> None:
    path = _relative_fleet(world, tmp_path)
    done = subprocess.run([RELORA, "rollout", str(path), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "gate set of 24 with 3 look(s) at alpha = 0.05" in lines[0]
    assert "can certify no margin up to 0.5" in lines[0] or "can certify margins of" in lines[0]
    assert "gate.allow_underpowered=true" in lines[0] and "adapter svc0" in lines[0]
    assert not (tmp_path / "out" / "ledger.sqlite3").exists()  # refused before the first job


def test_readapt_names_the_smallest_certifiable_margin(world, tmp_path: Path) -> None:
    done = subprocess.run([RELORA, "readapt", "--old-base", str(world.old_base), "--new-base", str(world.new_base),
                           "--adapter", str(world.adapter), "--train", str(world.train), "--val", str(world.val),
                           "--out", str(tmp_path / "o"), "--threshold", "old - 0.05", "--stop-when-ready",
                           f"cache_dir={world.root / 'cache'}", "data.ready_size=40", "data.val_size=8",
                           "gate.discordance=0.05", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and "a gate set of 40 with 3 look(s)" in line and "margins of 0." in line
    certifiable = float(line.split("margins of ")[1].split(" ")[0])
    assert 0.05 < certifiable <= 0.5 and f"a margin of at least {certifiable:g}" in line
    assert not (tmp_path / "o").exists()


def test_the_opt_out_runs_and_every_decision_is_recorded(world, tmp_path: Path) -> None:
    path = _relative_fleet(world, tmp_path, gate={"allow_underpowered": True})
    done = subprocess.run([RELORA, "rollout", str(path), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = Ledger(f"sqlite:///{tmp_path / 'out' / 'ledger.sqlite3'}").rows()
    for row in rows:
        record = RunRecord.load(tmp_path / "out" / "runs" / row["name"])
        gate = record.gate
        assert gate.allow_underpowered and gate.underpowered and gate.kind == "paired"
        assert gate.alpha == 0.05 and gate.margin == 0.05 and gate.alpha_per_look == 0.05 / 3
        assert "Waudby-Smith & Ramdas 2023" in gate.test and gate.gate_examples == 24
        assert gate.old_examples == 24 + 24 and gate.old_gate_accuracy is not None
        assert row["gate_verdict"] == gate.verdict and row["gate_looks"] == len(gate.looks)
        assert row["gate_examples_scored"] == gate.old_examples + sum(look.examples for look in gate.looks)
        assert (row["state"] == "ready") == (gate.verdict == "published")
        for look in gate.looks:
            assert look.verdict in ("publish", "reject") and 0 < look.examples <= 24
            assert look.screen_accuracy >= gate.screen_bar
        events = [json.loads(line) for line in (tmp_path / "out" / "runs" / row["name"] / "events.jsonl")
                  .read_text().splitlines()]
        assert [e["look"] for e in events if e["look"]] == [look.verdict for look in gate.looks]
    status = subprocess.run([RELORA, "status", str(tmp_path / "out")], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    head = status.stdout.splitlines()[2]
    for column in ("method", "gate_verdict", "gate_margin", "gate_alpha", "gate_looks", "gate_lower",
                   "gate_examples_scored"):
        assert column in head


def _readapt_portllm(world, out: Path, cache: Path, mode: str) -> RunRecord:
    """`relora readapt` in this process: three of them, and the refusals above run the console script."""
    done = CliRunner().invoke(main, ["readapt", "--old-base", str(world.old_base), "--new-base", str(world.new_base),
                                     "--adapter", str(world.adapter), "--train", str(world.train), "--val",
                                     str(world.val), "--out", str(out), "--method", "portllm", "--threshold",
                                     "old - 0.5", "--stop-when-ready", f"cache_dir={cache}", "data.ready_size=40",
                                     "data.val_size=8", "gate.chunk=8", "gate.allow_underpowered=true",
                                     f"gate.old_scoring={mode}", "--quiet"])
    assert done.exit_code == 0, done.output
    return RunRecord.load(out)


def test_the_old_service_is_scored_only_as_far_as_the_looks_read(world, tmp_path: Path) -> None:
    """A look that settles on its first chunks costs the old service those chunks, not the whole gate set; the
    verdict and every look are the same as when the whole set is scored first, and a run that finds the scores
    remembered is charged what they cost when they were scored."""
    lazy = _readapt_portllm(world, tmp_path / "lazy", tmp_path / "cache-lazy", "as-needed")
    upfront = _readapt_portllm(world, tmp_path / "upfront", tmp_path / "cache-upfront", "upfront")
    assert [look.model_dump() for look in lazy.gate.looks] == [look.model_dump() for look in upfront.gate.looks]
    assert lazy.gate.verdict == upfront.gate.verdict == "published"
    read = lazy.gate.looks[-1].examples
    assert read < 40, "the fixture's look should settle before the gate set ends"
    assert lazy.gate.old_examples == read + 8 and upfront.gate.old_examples == 40 + 8
    # (its CPU seconds are not compared: on the tiny fixture three chunks' overhead can outweigh 16 examples)
    again = _readapt_portllm(world, tmp_path / "again", tmp_path / "cache-lazy", "as-needed")  # remembered now
    assert again.gate.old_scoring_cpu_s == pytest.approx(lazy.gate.old_scoring_cpu_s)
    assert again.gate.old_examples == lazy.gate.old_examples


def test_remembered_scores_are_charged_pro_rata_and_a_damaged_memo_is_redone(tmp_path: Path) -> None:
    memo_file = tmp_path / "m.json"
    memo_file.write_text(json.dumps({"correct": [True] * 40, "cpu_s": 4.0}))  # a memo scored whole, before pieces
    memo = ScoreMemo.read(memo_file, 40)
    assert memo.pieces == [(40, 4.0)] and memo.cost(10) == pytest.approx(1.0) and memo.cost(40) == 4.0
    memo = ScoreMemo.read(tmp_path / "none.json", 40)
    memo.extend([True] * 8, 1.0)
    memo.extend([False] * 8, 3.0)
    again = ScoreMemo.read(memo.path, 40)
    assert again.correct == [True] * 8 + [False] * 8 and again.cost(8) == 1.0 and again.cost(12) == 2.5
    memo_file.write_text(json.dumps({"correct": [True] * 4, "pieces": [[9, 1.0]]}))  # pieces that miss the list
    assert ScoreMemo.read(memo_file, 40).correct == []
    assert ScoreMemo.read(memo_file, 2).correct == []  # longer than the split it keys


def test_the_futility_stop_is_planned_recorded_and_capped_at_the_margin(tmp_path: Path) -> None:
    from relora.core.model.config import ReadaptConfig
    from relora.core.run.gate_plan import plan_gate

    def planned(futility: float | None):
        cfg = ReadaptConfig(old_base="old", new_base="new", adapter="a", train="t.jsonl", val="v.jsonl",
                            out=str(tmp_path / "o"), threshold="old - 0.05", stop_when_ready=True,
                            gate={"discordance": 0.15, "futility": futility})
        return plan_gate(cfg, 1088)

    assert planned(None).futility is None and planned(0.01).futility == 0.01
    assert planned(0.2).futility == 0.05  # never more lenient than the margin itself
    assert planned(0.01).certifiable_margin == planned(None).certifiable_margin == 0.05
