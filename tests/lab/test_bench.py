"""WordNet tasks, base evolution and the bench pipeline, on tiny local stand-ins of the real inputs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import FILLER, WN_CUES
from relora.lab.run import ALL_METHODS, BenchOptions, Profile, run_bench
from relora.core.method.record import RunRecord
from relora.errors import InputError
from relora.lab.evolve import EvolveRecipe, EvolveRun, evolve
from relora.lab.report.tables import demo_summary
from relora.lab.tasks import NOUN_LEXNAMES, build_wn_topic, noun_glosses

LEX_NUM = {name: num for num, name in NOUN_LEXNAMES.items()}


def fake_wordnet(root: Path, per_label: int = 20) -> Path:
    """data.noun in WordNet 3.0's format: licence header, then synset lines with ' | ' glosses."""
    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["  1 This software and database is being provided to you, the LICENSEE, by  "]
    offset = 1000
    for label, cue in WN_CUES.items():
        for i in range(per_label):
            gloss = " ".join(rng.sample(FILLER, 4) + [cue])
            lines.append(f"{offset:08d} {LEX_NUM[label]:02d} n 01 word_{i} 0 000 | {gloss}; \"an example\"  ")
            offset += 1
    lines.append(f"{offset:08d} 29 n 01 verbish 0 000 | not a noun file number, skipped  ")
    (root / "data.noun").write_text("\n".join(lines) + "\n")
    return root


def test_noun_glosses_parse_categories_and_cut_examples(tmp_path: Path) -> None:
    glosses = noun_glosses(fake_wordnet(tmp_path / "wn"))
    assert set(glosses) == set(WN_CUES) and all(len(v) == 20 for v in glosses.values())
    lemma, definition = glosses["animal"][0]
    assert lemma == "word 0" and WN_CUES["animal"] in definition and "example" not in definition


def test_wn_topic_splits_are_seeded_balanced_and_disjoint(tmp_path: Path) -> None:
    wn = fake_wordnet(tmp_path / "wn")
    a = build_wn_topic(wn, tmp_path / "a", seed=3, per_label_train=10, val=24, test=24)
    b = build_wn_topic(wn, tmp_path / "b", seed=3, per_label_train=10, val=24, test=24)
    rows = {s: [json.loads(x) for x in a[s].read_text().splitlines()] for s in a}
    assert a["train"].read_text() == b["train"].read_text()
    assert len(rows["train"]) == 80 and len(rows["val"]) == 24 and len(rows["test"]) == 24
    assert {r["label"] for r in rows["train"]} == set(WN_CUES)
    texts = {s: {r["text"] for r in rows[s]} for s in rows}
    assert not texts["train"] & texts["val"] and not texts["train"] & texts["test"]
    with pytest.raises(InputError, match="too few"):
        build_wn_topic(wn, tmp_path / "c", per_label_train=30)


def test_evolve_changes_weights_and_saves_a_loadable_base(world, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    rng = random.Random(0)
    corpus.write_text(" ".join(rng.choice(FILLER) for _ in range(800)))
    out = tmp_path / "evolved"
    record = evolve(str(world.old_base), [str(corpus)], str(out), EvolveRecipe(steps=3, batch_size=4, block=16, rank=4,
                    lr=1e-2), EvolveRun(progress=False, cache_dir=str(tmp_path / "cache")))
    assert record["steps"] == 3 and (out / "evolve.json").is_file()
    old, new = load_file(world.old_base / "model.safetensors"), load_file(out / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert set(old) == set(new) and not torch.equal(old[name], new[name])
    assert not any("lora" in k for k in new)
    with pytest.raises(InputError, match="already exists"):
        evolve(str(world.old_base), [str(corpus)], str(out), EvolveRecipe(steps=1))


def test_bench_pipeline_writes_results_report_and_plots_and_resumes(world, tmp_path: Path) -> None:
    corpus = tmp_path / "tiny-corpus.txt"
    corpus.write_text(" ".join(random.Random(1).choice(FILLER) for _ in range(600)))
    profile = Profile("tiny", corpora=(str(corpus),), evolve_steps=3, old_adapter_steps=40, steps=8, batch_size=8,
                      lr=3e-2, eval_every=4, val_size=24, trials=6, grid_size=2, task_size="tiny")
    options = BenchOptions(cache_dir=str(tmp_path / "cache"), progress=False, base=str(world.old_base),
                           wordnet=str(fake_wordnet(tmp_path / "wn")))
    results = run_bench(profile, str(tmp_path / "bench"), options)
    cells = results["cells"]
    assert [c["cell"] for c in cells] == ["zero-shot (old base)", *ALL_METHODS]
    assert len({c["threshold"] for c in cells}) == 1
    trained = [c for c in cells if c["steps"] > 0]
    for c in cells:  # readiness is the first readiness check at or above the threshold, on the logged curve
        reached = [e for e in c["events"] if e["val_accuracy"] >= c["threshold"]]
        assert (c["ready_step"], c["ready_s"]) == ((reached[0]["step"], reached[0]["wall_s"]) if reached else (None, None))
    report = (tmp_path / "bench" / "report.md").read_text()
    for heading in ("Table II", "Table IV", "Table VIII", "Time-to-readiness"):
        assert heading in report
    table_ii = report.split("## Table II")[1].splitlines()
    relora_row = next(line for line in table_ii if line.startswith("| wn-topic | tiny-corpus | relora |"))
    relora_cell = next(c for c in cells if c["cell"] == "relora")
    assert f"| {relora_cell['metrics']['test_accuracy']:.3f} | {relora_cell['metrics']['val_accuracy']:.3f} |" in relora_row
    for png in ("accuracy_vs_time_wn-topic_tiny-corpus.png", "bo_probes_wn-topic_tiny-corpus.png", "time_to_readiness.png"):
        assert (tmp_path / "bench" / png).stat().st_size > 1000
    relora_json = tmp_path / "bench" / "seed0" / "wn-topic" / "tiny-corpus" / "relora" / "relora.json"
    stamp = relora_json.stat().st_mtime_ns
    again = run_bench(profile, str(tmp_path / "bench"), options)
    assert relora_json.stat().st_mtime_ns == stamp  # finished cells are skipped, not redone
    assert [c["metrics"] for c in again["cells"]] == [c["metrics"] for c in cells]
    assert len(again["bench_s_runs"]) == 2 and again["bench_s"] == sum(again["bench_s_runs"])
    assert [set(r) >= {"git_revision", "packages", "started_at", "wall_s", "setup_s"} for r in again["runs"]] == [True] * 2
    assert again["setup_s"] == results["setup_s"]  # the run that built each stage keeps its time
    old_quality = cells[0]["old_adapter_old_base_val_accuracy"]
    old_adapter = RunRecord.load(tmp_path / "bench" / "seed0" / "wn-topic" / "old-adapter")  # on the old base
    assert old_quality == old_adapter.metrics.val_accuracy and old_adapter.config["new_base"] == str(world.old_base)
    for c in trained:  # time to the old service's quality, read off the same curve
        reached = [e for e in c["events"] if e["val_accuracy"] >= old_quality]
        assert c["restore_s"] == (reached[0]["wall_s"] if reached else None)
    check_backbones_report(tmp_path / "bench", tmp_path)
    summary = "\n".join(demo_summary(results, tmp_path / "bench"))
    assert f"{relora_cell['metrics']['test_accuracy']:.3f}" in summary and "time_to_readiness.png" in summary
    # a summary, not the report: a line per method (the bench runs them all) and a handful around them
    assert summary.count("\n") <= len(ALL_METHODS) + 8


def check_backbones_report(bench: Path, tmp_path: Path) -> None:
    """Table III reads bench runs back; a second backbone is the same run under another base name."""
    from click.testing import CliRunner

    from relora.cli import main

    other = tmp_path / "bench-other"
    other.mkdir()
    results = json.loads((bench / "results.json").read_text())
    (other / "results.json").write_text(json.dumps(dict(results, base="other-base")))
    run = CliRunner().invoke(main, ["lab", "backbones", str(bench), str(other), "--out", str(tmp_path / "bb")])
    assert run.exit_code == 0, run.output
    text = (tmp_path / "bb" / "backbones.md").read_text()
    name = Path(results["base"]).name
    relora_rows = [line for line in text.splitlines() if "| relora |" in line]
    assert len(relora_rows) == 4 and {name, "other-base"} <= {line.split(" | ")[0][2:] for line in relora_rows}
    assert "76.6" in text  # the paper's LLaMA3.1-8B 20News figure beside ours
    assert (tmp_path / "bb" / "backbones_time_to_readiness.png").stat().st_size > 1000
    dup = CliRunner().invoke(main, ["lab", "backbones", str(bench), str(bench)])
    assert dup.exit_code != 0 and "one bench directory per backbone" in dup.output
    missing = CliRunner().invoke(main, ["lab", "backbones", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "results.json" in missing.output


def fake_wordnet_with_pointers(root: Path) -> Path:
    """Synsets with hypernym pointers: 4 parents with 5 children each, plus unrelated nouns."""
    root.mkdir(parents=True, exist_ok=True)
    lines, offset = [], 100
    for p in range(4):
        parent = offset
        lines.append(f"{parent:08d} 05 n 01 parent_{p} 0 000 | parent number {p} of things  ")
        offset += 1
        for c in range(5):
            lines.append(f"{offset:08d} 05 n 01 child_{p}_{c} 0 001 @ {parent:08d} n 0000 | child {c} of parent {p}  ")
            offset += 1
    for u in range(40):
        lines.append(f"{offset:08d} 06 n 01 thing_{u} 0 000 | an unrelated thing numbered {u}  ")
        offset += 1
    (root / "data.noun").write_text("\n".join(lines) + "\n")
    return root


def test_wn_relation_labels_follow_the_hypernym_graph(tmp_path: Path) -> None:
    from relora.lab.tasks import build_wn_relation

    paths = build_wn_relation(fake_wordnet_with_pointers(tmp_path / "wn"), tmp_path / "rel", train=30, val=9, test=9)
    rows = [json.loads(x) for x in paths["train"].read_text().splitlines()]
    assert {r["label"] for r in rows} == {"entailment", "contradiction", "neutral"} and len(rows) == 30
    for r in rows:
        premise, hypothesis = (part.split("this is a ")[1].rstrip(".") for part in r["text"].split("\n"))
        if r["label"] == "entailment":  # lemmas read "child P C" and "parent P"
            assert premise.startswith("child") and hypothesis == f"parent {premise.split()[1]}"
        if r["label"] == "contradiction":
            assert premise.split()[1] == hypothesis.split()[1] and premise != hypothesis


def test_wn_define_is_four_way_multiple_choice(tmp_path: Path) -> None:
    from relora.lab.tasks import build_wn_define

    paths = build_wn_define(fake_wordnet_with_pointers(tmp_path / "wn"), tmp_path / "def", train=20, val=8, test=8)
    rows = [json.loads(x) for x in paths["val"].read_text().splitlines()]
    assert len(rows) == 8
    assert all(len(r["choices"]) == 4 and r["label"] in r["choices"] and len(set(r["choices"])) == 4 for r in rows)


def test_every_committed_results_file_loads_as_typed_cells() -> None:
    """results.json cells are BenchCells: every committed results file validates (a renamed or missing field
    fails here), and a dumped cell reads back equal."""
    import json

    from relora.lab.cell import BenchCell, cells_of

    files = sorted((Path(__file__).resolve().parents[2] / "docs" / "results").rglob("results.json"))  # archive/ included
    assert len(files) >= 6
    for path in files:
        cells = cells_of(json.loads(path.read_text()))
        assert cells and all(c.events for c in cells), path
        first = cells[0]
        assert BenchCell.model_validate(first.model_dump(mode="json")) == first
        assert first.init_val_accuracy == first.events[0].val_accuracy
