"""#17: readiness judged on a gate set no search scored, update retention, known points kept per method,
and the fleet race through the real CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from helpers import RELORA, copy_adapter, fast_config, write_fleet, write_probe
from relora.cli import main
from relora.core.model.config import ReadaptConfig
from relora.core.model.data import read_jsonl
from relora.core.run.inputs import split_positions
from relora.core.run.readapt import readapt
from relora.core.method.record import RunRecord
from relora.core.method.search.known import REVERT, earlier, known_points
from relora.errors import InputError


def _run(world, out: Path, method: str, **extra):
    return readapt(ReadaptConfig(**fast_config(world, out, method, **extra)), progress=False)


def _hand_loss(base: Path, adapter: Path | None, probe: Path) -> float:
    """The probe's LM loss the plain transformers + PEFT way: each 64-token block through the full model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(base))(probe.read_text(), add_special_tokens=False)["input_ids"]
    blocks = torch.tensor(ids[: len(ids) // 64 * 64]).view(-1, 64)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    with torch.no_grad():
        return sum(model(input_ids=b[None], labels=b[None]).loss.item() for b in blocks) / len(blocks)


def test_retention_matches_a_hand_computation_is_one_for_portllm_and_null_without_a_probe(world, tmp_path: Path) -> None:
    probe = write_probe(tmp_path / "probe.txt")
    cache = str(tmp_path / "cache")
    port = _run(world, tmp_path / "port", "portllm", update_probe=str(probe), cache_dir=cache)
    assert port.retention is not None and port.retention.value == 1.0  # the old adapter on the new base, exactly
    ft = _run(world, tmp_path / "ft", "portllm-ft", update_probe=str(probe), cache_dir=cache)
    r = ft.retention
    assert r is not None and r.blocks == 6
    old = _hand_loss(world.old_base, world.adapter, probe)
    portllm = _hand_loss(world.new_base, world.adapter, probe)
    new = _hand_loss(world.new_base, tmp_path / "ft", probe)
    assert (r.loss_old, r.loss_portllm, r.loss_new) == pytest.approx((old, portllm, new), rel=1e-4)
    assert abs(old - portllm) > 1e-3  # the tiny update moves the probe's loss, so the ratio means something
    assert r.value == pytest.approx((old - new) / (old - portllm), rel=1e-3)
    assert _run(world, tmp_path / "none", "portllm", cache_dir=cache).retention is None


def test_an_empty_probe_is_refused_in_one_line(world, tmp_path: Path) -> None:
    (tmp_path / "probe.txt").write_text("w1 w2\n")
    with pytest.raises(InputError, match="fewer than one 64-token block"):
        _run(world, tmp_path / "x", "portllm", update_probe=str(tmp_path / "probe.txt"))


def test_every_readiness_measure_uses_only_examples_no_search_scored(world, tmp_path: Path) -> None:
    """relora's init is chosen on D_val (probes, the guard), and so is the screen that sends a checkpoint to the
    gate; the gate's looks score only the gate set, which is disjoint from D_val, drawn with a seed of its own."""
    from relora.core.math import gate as tests
    from relora.core.model.adapter import attach_lora, read_adapter
    from relora.core.run.inputs import tokenized_gate, tokenized_val
    from relora.core.model.models import load_model, load_tokenizer
    from relora.core.model.scoring import evaluate

    record = _run(world, tmp_path / "r", "relora", threshold=0.01, stop_when_ready=True,
                  gate={"allow_underpowered": True})
    cfg = ReadaptConfig(**record.config)
    n = len(read_jsonl(world.val))
    searched, gate = split_positions(n, cfg)
    assert gate is not None and not set(searched) & set(gate) and len(gate) == n // 2 == record.n_examples["val_ready"]
    assert split_positions(n, cfg.model_copy(update={"seed": 7}))[1] == gate  # fixed across seeds
    assert record.judged_on == "gate set" and record.steps == 0 and record.gate.published  # ready at step 0
    assert max(p.n_examples for p in record.probes) == len(searched) == record.n_examples["val_search"]
    tok = load_tokenizer(world.new_base)
    model = attach_lora(load_model(world.new_base), read_adapter(tmp_path / "r"), 0)
    screened = evaluate(model, tokenized_val(cfg, tok, record.labels), int(tok.pad_token_id))
    assert screened.correct == record.val_correct and screened.accuracy == pytest.approx(record.metrics.val_accuracy)
    # the one look, re-derived on exactly the gate set's examples: the one-sample test on the saved adapter
    items = tokenized_gate(cfg, tok, record.labels)
    assert len(items) == len(gate)
    x = np.array(evaluate(model, items, int(tok.pad_token_id)).correct, dtype=float)
    (look,) = record.gate.looks
    spec = tests.absolute_spec(threshold=0.01, alpha=record.gate.alpha_per_look, chunk=record.gate.chunk)
    verdict, used = tests.decide(x[: look.examples], spec, len(x))
    assert int(verdict) == 1 and int(used) == look.examples and look.estimate == pytest.approx(x[: look.examples].mean())


def test_a_validation_file_too_small_to_split_is_refused_and_ready_size_zero_opts_out(world, tmp_path: Path) -> None:
    small = tmp_path / "val.jsonl"
    small.write_text("".join(line + "\n" for line in world.val.read_text().splitlines()[:6]))
    with pytest.raises(InputError, match="has 6 validation examples; a gate set of 3"):
        _run(world, tmp_path / "x", "portllm", val=str(small))
    record = _run(world, tmp_path / "y", "portllm", val=str(small), data={"ready_size": 0})
    assert record.judged_on == "D_val" and record.n_examples["val_ready"] == record.n_examples["val_search"] == 6


def test_known_points_of_one_method_never_reach_another(world, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    bo = _run(world, tmp_path / "bo", "relora-bo", cache_dir=str(cache), training={"steps": 0})
    pair = (bo.hashes["old_base"], bo.hashes["new_base"])
    other = copy_adapter(world.adapter, tmp_path / "other")
    grad = _run(world, tmp_path / "grad", "relora", cache_dir=str(cache), adapter=str(other), training={"steps": 0},
                search={"trials": 6, "n_init": 3, "gradient_steps": 6, "gradient_lr": 0.03})
    assert grad.search_known_earlier == 0  # relora-bo's answer is not relora's prior
    assert [(p.alpha, p.beta) for p in grad.probes if p.stage == "explore"] == [(0.0, 1.0), REVERT]
    # at step size 0.03 the tiny fixtures' learned coefficients lower D_val's loss and are kept (test_variants pins
    # both branches): stored as the per-group pairs they evaluated, never their mean, so no new single point
    assert grad.coefficients is not None and known_points(cache, "relora", *pair) == [REVERT]
    stored = earlier(cache, "relora", *pair)
    assert len(stored) == 1 and stored[0].point is None
    assert stored[0].groups == {g: tuple(c) for g, c in grad.coefficients.items()}
    third = copy_adapter(other, tmp_path / "third")  # a third content hash: not the service that stored the groups
    again = _run(world, tmp_path / "again", "relora", cache_dir=str(cache), adapter=str(third), training={"steps": 0},
                 search={"trials": 6, "n_init": 3, "gradient_steps": 6, "gradient_lr": 0.03})
    stages = [p.stage for p in again.probes]
    assert "known-groups" in stages  # re-used as per-group pairs


def test_a_tiny_fleet_race_through_the_cli(world, tmp_path: Path) -> None:
    fleet_file = write_fleet(world, tmp_path, n=2, steps=4, update_probe=str(write_probe(tmp_path / "probe.txt")))
    tree = yaml.safe_load(fleet_file.read_text())
    tree["defaults"] |= {"threshold": "old - 0.05"}
    tree["defaults"]["readapt"] |= {"stop_when_ready": True, "gate": {"allow_underpowered": True}}
    for entry in tree["adapters"]:
        entry["test"] = str(world.test)
    fleet_file.write_text(yaml.safe_dump(tree))
    out = tmp_path / "race"
    # a repeated seed or method is one rollout, summarized once
    cmd = [RELORA, "lab", "race", str(fleet_file), "--out", str(out), "--methods", "portllm,relora,portllm", "--seeds",
           "0,1,0", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and set(summary["methods"]) == {"portllm", "relora"}
    for method, info in summary["methods"].items():
        assert {"compute_s_median", "zero_step_share", "retention_mean", "retention_min", "false_publish_rate_test",
                "false_publish_interval", "published_below_margin_point_test", "examples_per_decision",
                "never_ready", "ready_share"} <= set(info)
        assert info["ready_share"] == pytest.approx(sum(m["ready"] for m in info["per_seed"]) / 4)
        assert [m["seed"] for m in info["per_seed"]] == [0, 1] and all(m["services"] == 2 for m in info["per_seed"])
        assert info["services_tested"] == 4 and 0 <= info["false_publishes_test"] <= 4
        lo, hi = info["false_publish_interval"]
        assert lo <= info["false_publish_rate_test"] <= hi and hi > 0.3  # 4 services: a wide interval
        # the old service on D_val (24), then on the gate only as far as each look read, and every look's examples
        assert info["examples_per_decision"] >= 24
        # the fleet's gate, old service, fallback and flips were judged on the 24 gate examples of the 48
        assert all(m["judged_on"] == ["gate set (24)"] for m in info["per_seed"])
        for m in info["per_seed"]:  # the same compute counted, summed from each service's relora.json
            runs = [RunRecord.load(d) for d in (out / f"seed{m['seed']}" / method / "rollout" / "runs").iterdir()
                    if (d / "relora.json").is_file()]
            assert len(runs) == 2 and all(r.work is not None for r in runs)
            assert m["examples_scored"] == sum(r.work.examples_scored for r in runs) > 0
            assert m["train_tokens"] == sum(r.work.train_tokens for r in runs)
    assert all(m["train_tokens"] == 0 for m in summary["methods"]["portllm"]["per_seed"])  # PortLLM never trains
    assert summary["gate"]["margin"] == 0.05 and summary["gate"]["alpha"] == 0.05 and summary["gate"]["looks"] == 3
    assert summary["methods"]["portllm"]["retention_min"] == 1.0 == summary["methods"]["portllm"]["retention_mean"]
    assert summary["methods"]["portllm"]["compute_s_median"] < summary["methods"]["relora"]["compute_s_median"]
    for seed in (0, 1):  # a cache of its own per rollout: known points never cross methods or seeds
        for method in ("portllm", "relora"):
            assert (out / f"seed{seed}" / method / "rollout" / "ledger.sqlite3").is_file()
    index = out / "seed0" / "relora" / "cache" / "searches" / "known-points.json"
    assert all(key.startswith("relora|") for key in json.loads(index.read_text()))
    assert "| relora (seeds 0,1) |" in (out / "report.md").read_text() and (out / "race.png").stat().st_size > 1000
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # a re-run resumes: nothing redone
    assert again.returncode == 0 and json.loads((out / "summary.json").read_text())["methods"] == summary["methods"]
    fewer = subprocess.run([*cmd[:-2], "0,1,2", "--quiet", "--summary-only"], capture_output=True, text=True, timeout=600)
    partial = json.loads((out / "summary.json").read_text())
    assert fewer.returncode == 0 and partial["methods"]["relora"]["unfinished_seeds"] == [2]  # never rolled out
    assert partial["methods"]["relora"]["per_seed"] == summary["methods"]["relora"]["per_seed"]
    # a race rolls on only at the revision it ran at: a rollout recorded at another one is refused, naming both
    record = next((out / "seed0" / "relora" / "rollout" / "runs").glob("*/relora.json"))
    kept = record.read_text()
    record.write_text(json.dumps(json.loads(kept) | {"git_revision": "0" * 40}))
    moved = CliRunner().invoke(main, cmd[1:])  # refused before any rollout: in-process is enough
    assert moved.exit_code == 2 and "0" * 40 in moved.output and "worktree" in moved.output, moved.output[-2000:]
    record.write_text(kept)
    # the rollouts of seed 0 lost, its figures taken from the earlier summary: the same summary, saying so
    lost = tmp_path / "race-lost"
    shutil.copytree(out / "seed1", lost / "seed1")
    earlier_file = tmp_path / "earlier_file.json"
    shutil.copy(out / "summary.json", earlier_file)
    merged = subprocess.run([*cmd[:3], str(fleet_file), "--out", str(lost), "--methods", "portllm,relora", "--seeds",
                             "0,1", "--quiet", "--summary-only", "--earlier-summary", str(earlier_file)],
                            capture_output=True, text=True, timeout=600)
    assert merged.returncode == 0, merged.stderr[-2000:]
    joined = json.loads((lost / "summary.json").read_text())
    assert joined["methods"] == summary["methods"] and joined["run_revisions"] == summary["run_revisions"]
    assert joined["seeds_from_earlier"] == {"file": str(earlier_file), "methods": {"portllm": [0], "relora": [0]}}
    other = json.loads(earlier_file.read_text())
    other["gate"]["margin"] = 0.1  # another race's summary is refused, naming it
    earlier_file.write_text(json.dumps(other))
    refused = subprocess.run(merged.args, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and str(earlier_file) in refused.stderr and "another gate" in refused.stderr


def test_min_retention_gates_a_fleet_and_needs_a_probe(world, tmp_path: Path) -> None:
    from relora.fleet.config import load_fleet
    from relora.fleet.ledger import Ledger
    from relora.fleet.rollout import rollout

    spec = yaml.safe_load(write_fleet(world, tmp_path, n=1, steps=4).read_text())
    spec["defaults"] |= {"method": "portllm-ft", "threshold": 0.01, "min_retention": 1.0}
    (tmp_path / "no-probe.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match="min_retention needs update_probe"):
        load_fleet(str(tmp_path / "no-probe.yaml"))
    spec["update_probe"] = str(write_probe(tmp_path / "probe.txt"))
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(spec))
    fleet = load_fleet(str(tmp_path / "probe.yaml"))
    rollout(fleet, progress=False)
    row = Ledger(fleet.ledger_url).rows()[0]
    # the gate itself is cleared (0.01), but training moved the probe's loss: less than all of the update kept
    assert row["val_accuracy"] >= row["threshold"] and row["retention"] < 1.0
    assert row["state"] == "below-threshold" and "kept too little of the update" in row["error"]


def test_relora_reuse_searches_for_the_first_service_of_a_base_pair_only(world, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    search = {"trials": 6, "n_init": 3, "gradient_steps": 6, "gradient_lr": 0.1}
    first = _run(world, tmp_path / "first", "relora-reuse", cache_dir=str(cache), training={"steps": 0}, search=search)
    assert "gradient" in [p.stage for p in first.probes]  # no earlier search on this pair: it learns
    pair = (first.hashes["old_base"], first.hashes["new_base"])
    assert len(earlier(cache, "relora-reuse", *pair)) == 1
    other = copy_adapter(world.adapter, tmp_path / "other")
    second = _run(world, tmp_path / "second", "relora-reuse", cache_dir=str(cache), adapter=str(other),
                  training={"steps": 0}, search=search)
    stages = [p.stage for p in second.probes]
    assert "gradient" not in stages and second.probes  # screened the known starts, learned nothing
    assert (0.0, 1.0) in [(p.alpha, p.beta) for p in second.probes if p.stage == "explore"]
    # relora, on the same cache, still pays for its own search: reuse's answers are not its prior
    third = _run(world, tmp_path / "third", "relora", cache_dir=str(cache), adapter=str(other),
                 training={"steps": 0}, search=search)
    assert "gradient" in [p.stage for p in third.probes]


def _readapt_cli(world, out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([RELORA, "readapt", "--old-base", str(world.old_base), "--new-base", str(world.new_base),
                           "--adapter", str(world.adapter), "--train", str(world.train), "--val", str(world.val),
                           "--out", str(out), "--method", "relora", f"cache_dir={cache}", "training.steps=0",
                           "search.trials=6", "search.n_init=3", "search.raw_samples=32", "search.num_restarts=2",
                           *extra, "--quiet"], capture_output=True, text=True)


def test_a_start_below_the_retention_floor_is_replaced_by_portllms(world, tmp_path: Path) -> None:
    """search.min_retention: the searched start's retention is measured on the probe before training; on the
    tiny fixture relora's search ends at the revert point, which keeps less than the floor, so the run starts
    from the old adapter as it is (retention 1) and says so. Without the floor the start is kept and not measured;
    without a probe the floor is refused in one line."""
    probe, cache = write_probe(tmp_path / "probe.txt"), tmp_path / "cache"
    free = _readapt_cli(world, tmp_path / "free", cache, f"update_probe={probe}")
    assert free.returncode == 0, free.stderr
    kept = RunRecord.load(tmp_path / "free")
    assert (kept.alpha, kept.start_retention, kept.start_replaced) == (REVERT[0], None, False)
    assert kept.retention.value < 0.9  # zero steps: the saved adapter is the start
    floored = _readapt_cli(world, tmp_path / "floored", cache, f"update_probe={probe}", "search.min_retention=0.9")
    assert floored.returncode == 0, floored.stderr
    record = RunRecord.load(tmp_path / "floored")
    assert record.start_replaced and (record.alpha, record.beta, record.coefficients) == (0.0, 1.0, None)
    assert record.start_retention == pytest.approx(kept.retention.value, abs=1e-3)  # the same start, measured first
    assert record.retention.value == 1.0 and record.probes  # PortLLM's start; the search was run and is charged
    refused = _readapt_cli(world, tmp_path / "x", cache, "search.min_retention=0.9")
    assert refused.returncode == 2 and "search.min_retention" in refused.stderr and "update_probe" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_the_revision_check_compares_only_what_it_can(tmp_path: Path) -> None:
    from relora.fleet.race import check_one_revision

    check_one_revision(tmp_path, "abc")  # nothing rolled out yet: any revision may start the race
    run = tmp_path / "seed0" / "portllm" / "rollout" / "runs" / "svc"
    run.mkdir(parents=True)
    (run / "relora.json").write_text(json.dumps({"git_revision": "abc"}))
    check_one_revision(tmp_path, "abc")
    check_one_revision(tmp_path, None)  # an installed wheel has no revision to compare
    with pytest.raises(InputError, match="abc, and this checkout is abc[+]dirty"):
        check_one_revision(tmp_path, "abc+dirty")  # edits since are other code, too
