"""An output directory is relora's or it is not touched, and a fleet never publishes for a base it was not
made for: through the real CLI, with every user file hashed before and after."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import write_fleet
from relora.cli import main
from relora.core.run.outputs import MARKER
from relora.fleet.config import load_fleet
from relora.fleet.ledger import Ledger
from relora.fleet.rollout import rollout
from test_bad_input import readapt_args, run_cli, tree_hash


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch) -> Path:
    """A directory of the user's own files, made the current directory."""
    home = tmp_path / "home" / "work"
    home.mkdir(parents=True)
    (home / "notes.txt").write_text("mine\n")
    (home / "src").mkdir()
    (home / "src" / "main.py").write_text("print('mine')\n")
    monkeypatch.chdir(home)
    return home


@pytest.mark.parametrize("out, needle", [(".", "is the current directory"), ("", "is empty"),
                                         ("..", "is an ancestor of the current directory"), ("/", "is /")])
def test_force_never_takes_the_current_directory_an_ancestor_or_an_empty_out(world, user_dir: Path, out: str,
                                                                             needle: str) -> None:
    before = tree_hash(user_dir.parent)
    run_cli([*readapt_args(world, out), "--method", "portllm", "--force"], 2, needle)
    assert tree_hash(user_dir.parent) == before and sorted(p.name for p in user_dir.iterdir()) == ["notes.txt", "src"]


def test_force_replaces_only_an_output_relora_wrote(world, user_dir: Path) -> None:
    before, mine = tree_hash(user_dir), tree_hash(user_dir / "notes.txt", user_dir / "src")
    line = run_cli([*readapt_args(world, user_dir / "src"), "--method", "portllm", "--force"], 2, "relora did not write")
    assert "main.py" in line and tree_hash(user_dir) == before
    out = user_dir / "runs" / "a"
    first = CliRunner().invoke(main, [*readapt_args(world, out), "--method", "portllm"])
    assert first.exit_code == 0, first.output
    assert json.loads((out / MARKER).read_text())["written_by"] == "relora"
    again = CliRunner().invoke(main, [*readapt_args(world, out), "--method", "portllm", "--force"])
    assert again.exit_code == 0, again.output  # its own output: replaced
    assert tree_hash(user_dir / "notes.txt", user_dir / "src") == mine


def test_a_chained_run_may_not_replace_its_own_input(world, user_dir: Path) -> None:
    out = user_dir / "runs" / "a"
    assert CliRunner().invoke(main, [*readapt_args(world, out), "--method", "portllm"]).exit_code == 0
    before = tree_hash(out)
    run_cli([*readapt_args(world, out, adapter=str(out)), "--method", "portllm", "--force"], 2, "itself")
    run_cli([*readapt_args(world, out.parent, adapter=str(out)), "--method", "portllm", "--force"], 2, "contains input")
    assert tree_hash(out) == before


@pytest.mark.parametrize("out, needle", [("", "out: is empty"), (".", "holds the fleet file itself")])
def test_a_fleet_out_that_is_empty_or_holds_the_fleet_file_is_refused(world, tmp_path: Path, out: str,
                                                                      needle: str) -> None:
    spec = yaml.safe_load(write_fleet(world, tmp_path, n=1).read_text()) | {"out": out}
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(spec))
    before = tree_hash(tmp_path)
    run_cli(["rollout", str(tmp_path / "fleet.yaml")], 2, needle)
    assert tree_hash(tmp_path) == before


def test_a_race_out_of_the_current_directory_is_refused(world, user_dir: Path, tmp_path: Path) -> None:
    fleet = write_fleet(world, tmp_path, n=1)
    before = tree_hash(user_dir)
    run_cli(["lab", "race", str(fleet), "--out", ".", "--methods", "portllm", "--quiet"], 2, "is the current directory")
    assert tree_hash(user_dir) == before


def rewrite_weights(base: Path, factor: float) -> None:
    from safetensors.torch import load_file, save_file

    weights = base / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if k.endswith("q_proj.weight"))
    tensors[name] = tensors[name] * factor
    save_file(tensors, weights, metadata={"format": "pt"})


def published_bases(out: Path) -> set[str]:
    return {json.loads((p / "relora_lineage.json").read_text())["new_base"]["sha256"]
            for p in (out / "published").iterdir() if p.is_dir()}


@pytest.mark.parametrize("change", ["new path", "same path, new content", "threshold"])
def test_a_rerun_after_its_inputs_change_redoes_every_row(world, tmp_path: Path, change: str) -> None:
    """Same out:, changed inputs: every row is redone, and published/ holds only adapters whose lineage names
    the fleet's current new base; an unchanged re-run redoes nothing."""
    base = tmp_path / "new_base"
    shutil.copytree(world.new_base, base)
    spec = yaml.safe_load(write_fleet(world, tmp_path, n=2, steps=0).read_text())
    spec["defaults"] |= {"method": "portllm", "threshold": "old - 0.45"}
    spec["defaults"]["readapt"] |= {"gate": {"allow_underpowered": True}}
    spec["new_base"] = str(base)
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(spec))
    fleet = load_fleet(str(tmp_path / "a.yaml"))
    rollout(fleet, progress=False)
    first = {r["name"]: r for r in Ledger(fleet.ledger_url).rows()}
    rollout(fleet, progress=False)  # nothing changed: nothing redone
    assert {r["name"]: r["started_at"] for r in Ledger(fleet.ledger_url).rows()} == {
        n: r["started_at"] for n, r in first.items()}

    if change == "new path":
        other = tmp_path / "newer_base"
        shutil.copytree(base, other)
        rewrite_weights(other, 1.01)
        spec["new_base"] = str(other)
    elif change == "same path, new content":
        rewrite_weights(base, 1.01)
    else:
        spec["defaults"]["threshold"] = "old - 0.4"
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(spec))
    fleet = load_fleet(str(tmp_path / "b.yaml"))
    rollout(fleet, progress=False)
    rows = Ledger(fleet.ledger_url).rows()
    assert all(r["state"] in ("ready", "below-threshold") and r["started_at"] > first[r["name"]]["ended_at"]
               for r in rows)
    current = json.loads(rows[0]["inputs"])["new_base"]
    assert (current != json.loads(first["svc0"]["inputs"])["new_base"]) == (change != "threshold")
    assert published_bases(Path(fleet.out)) <= {current}  # lineage: the sha256 of the base the fleet names now
    assert sorted(p.name for p in (Path(fleet.out) / "published").iterdir()) == sorted(
        r["name"] for r in rows if r["state"] == "ready")
    assert not list((Path(fleet.out) / "published").glob(".*withdrawn"))
