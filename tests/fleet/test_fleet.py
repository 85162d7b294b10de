"""Fleet rollout on tiny models: resume after kill -9, bad inputs, two rollouts, full disk, Ray."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
import numpy as np
from pathlib import Path

import pytest
import yaml

from helpers import RELORA, copy_adapter, write_fleet
from relora.core.method.record import RunRecord
from relora.errors import InputError, RolloutStopped
from relora.fleet.rollout import rollout
from relora.fleet.config import load_fleet
from relora.fleet.report import write_fleet_report
from relora.fleet.ledger import Ledger

def _tree_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()


def _assert_all_ready_once(out: Path, names: list[str]) -> list[dict]:
    rows = Ledger(f"sqlite:///{out / 'ledger.sqlite3'}").rows()
    assert [r["state"] for r in rows] == ["ready"] * len(names)
    assert sorted(p.name for p in (out / "published").iterdir()) == sorted(names)  # no temp or partial dirs
    for name in names:
        assert (out / "published" / name / "adapter_model.safetensors").is_file()
    assert not [p for p in out.rglob(".*") if p.is_dir()]
    return rows


def test_rollout_publishes_gated_adapters_with_report(world, tmp_path: Path) -> None:
    before = _tree_hash(world.adapter)
    fleet = load_fleet(str(write_fleet(world, tmp_path, n=2)))
    counts = rollout(fleet, progress=False)
    assert counts["ready"] == 2
    rows = _assert_all_ready_once(Path(fleet.out), ["svc0", "svc1"])
    for r in rows:
        assert r["attempts"] == 1 and r["val_accuracy"] >= 0.5
        prov = RunRecord.load(r["output_path"])
        assert prov.hashes["adapter"] and prov.method == "relora"
        check_service_measures(world, r, prov, Path(r["output_path"]))
    assert _tree_hash(world.adapter) == before  # old adapters are never touched
    report = write_fleet_report(fleet.out, scratch_steps=8)
    assert "ready 2" in report.read_text() and (Path(fleet.out) / "report" / "index.html").is_file()
    assert "Scratch estimate" in report.read_text() and "Provenance: relora revision" in report.read_text()
    assert (Path(fleet.out) / "fleet_quality.png").stat().st_size > 1000
    assert rollout(fleet, progress=False)["ready"] == 2  # a re-run skips ready rows
    assert [r["attempts"] for r in Ledger(fleet.ledger_url).rows()] == [1, 1]


def test_relative_gate_stops_at_the_old_services_quality(world, tmp_path: Path) -> None:
    """threshold: old - m gates each adapter by the paired test against its own old service at margin m; the
    verdict is re-derived from an independent scorer. With stop_when_ready the second adapter's search is seeded
    by the first's, and the report says so. The tiny gate set (24) is underpowered, so the test opts out."""
    spec = yaml.safe_load(write_fleet(world, tmp_path, n=2, steps=8).read_text())
    spec["defaults"] |= {"threshold": "old - 0.05"}
    spec["defaults"]["readapt"] |= {"stop_when_ready": True, "gate": {"allow_underpowered": True}}
    spec["adapters"][1]["threshold"] = "old - 0.45"  # about what 24 examples can certify
    spec["cache_dir"] = str(tmp_path / "cache")  # no earlier searches on this update from other tests
    spec["adapters"][1]["path"] = str(copy_adapter(world.adapter, tmp_path / "svc1-adapter"))  # another service
    (tmp_path / "rel.yaml").write_text(yaml.safe_dump(spec))
    fleet = load_fleet(str(tmp_path / "rel.yaml"))
    rollout(fleet, progress=False)
    rows = Ledger(fleet.ledger_url).rows()
    for row, margin in zip(rows, (0.05, 0.45)):
        run_dir = Path(fleet.out) / "runs" / row["name"]
        record = RunRecord.load(run_dir)
        gate = record.gate
        assert gate.kind == "paired" and gate.margin == row["gate_margin"] == margin and gate.allow_underpowered
        assert row["threshold"] == pytest.approx(gate.old_gate_accuracy - margin) == pytest.approx(record.threshold)
        rescored = check_service_measures(world, row, record, run_dir)  # D_val, from an independent scorer
        assert row["val_accuracy"] == pytest.approx(rescored)
        assert (row["state"] == "ready") == gate.published == (row["gate_verdict"] == "published")
        check_last_look(world, record, run_dir)
        assert row["probes"] == len(record.probes) and row["steps"] == record.steps
    assert [r["known_earlier"] for r in rows] == [0, 1]
    text = write_fleet_report(fleet.out).read_text()
    zero = sum(r["state"] == "ready" and r["steps"] == 0 for r in rows)
    assert f"zero training steps (the searched init already met the gate): {zero} of 2" in text
    assert f"no earlier search on this update: {rows[0]['probes']:.1f} over 1 adapters" in text
    assert f"seeded by earlier searches: {rows[1]['probes']:.1f} over 1 adapters" in text


def check_last_look(world, record: RunRecord, run_dir: Path) -> None:
    """The gate's last look, when it judged the saved adapter, re-derived: both services rescored on the gate set
    with PEFT's loader and the reference evaluator, then the same test on d = new - old."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from relora.lab.perf.reference import reference_evaluate
    from relora.core.math import gate as tests
    from relora.core.model.config import ReadaptConfig
    from relora.core.run.inputs import tokenized_gate
    from relora.core.model.models import load_tokenizer

    look = record.gate.looks[-1] if record.gate.looks else None
    if look is None or look.step != record.steps:
        return
    tok = load_tokenizer(world.old_base)
    items = tokenized_gate(ReadaptConfig(**record.config), tok, record.labels)

    def correct(base: Path, adapter: Path) -> np.ndarray:
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter)).eval()
        return np.array(reference_evaluate(model, items, tok.pad_token_id, batch_size=8).correct, dtype=float)

    d = correct(world.new_base, run_dir) - correct(world.old_base, world.adapter)
    g = record.gate
    spec = tests.paired_spec(margin=g.margin, alpha=g.alpha_per_look, chunk=g.chunk)
    verdict, used = tests.decide(d[: look.examples], spec, len(d))
    assert int(used) == look.examples
    assert {1: "publish", -1: "reject"}[int(verdict)] == look.verdict
    assert look.estimate == pytest.approx(d[: look.examples].mean())


def test_a_fleet_job_reads_and_tokenizes_its_files_once(world, tmp_path: Path, monkeypatch) -> None:
    """One job reads each data file once, tokenizes each split once and resolves each base once, though it
    scores the old service, the new adapter and the fallback."""
    from collections import Counter

    import relora.core.model.data as data
    import relora.core.run.inputs as inputs
    import relora.core.model.resolve as resolve

    reads, tokenized, resolved = Counter(), Counter(), Counter()
    read, tokenize, resolve_base = data.read_jsonl, data.tokenize, resolve.resolve_base

    def counted_read(path, *a, **k):
        reads[str(path)] += 1
        return read(path, *a, **k)

    def counted_tokenize(examples, *a, **k):
        tokenized[len(examples)] += 1
        return tokenize(examples, *a, **k)

    def counted_resolve(base, *a, **k):
        resolved[str(base)] += 1
        return resolve_base(base, *a, **k)

    for module in (data, inputs):
        monkeypatch.setattr(module, "read_jsonl", counted_read)
        monkeypatch.setattr(module, "tokenize", counted_tokenize)
    for module in (inputs, resolve):
        monkeypatch.setattr(module, "resolve_base", counted_resolve)
    fleet = load_fleet(str(write_fleet(world, tmp_path, n=1, steps=2)))
    rollout(fleet, progress=False)
    row = Ledger(fleet.ledger_url).rows()[0]
    assert row["state"] in ("ready", "below-threshold") and row["old_service_val_accuracy"] is not None
    assert reads == Counter({str(world.train): 1, str(world.val): 1}), reads
    assert sum(tokenized.values()) == 2, tokenized  # train and val
    assert resolved == Counter({str(world.new_base): 1, str(world.old_base): 1}), resolved


@pytest.mark.parametrize("bad", ["old + 0.1", "older", "old - 1.5", 0, 1.2])
def test_bad_gates_are_refused_in_one_line(world, tmp_path: Path, bad) -> None:
    spec = yaml.safe_load(write_fleet(world, tmp_path, n=1).read_text())
    spec["defaults"]["threshold"] = bad
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match=r"defaults\.threshold.*old - 0\.05|defaults\.threshold.*below 1"):
        load_fleet(str(tmp_path / "bad.yaml"))


def check_service_measures(world, row: dict, record: RunRecord, run_dir: Path) -> float:
    """The ledger's old-service quality and negative flips, recomputed with PEFT's own loader and the
    full-logits reference evaluator (no code shared with the fleet's measurement); returns the new
    adapter's accuracy so rescored."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from relora.lab.perf.reference import reference_evaluate
    from relora.core.model.config import ReadaptConfig
    from relora.core.run.inputs import tokenized_val
    from relora.core.model.models import load_tokenizer

    tok = load_tokenizer(world.old_base)
    val = tokenized_val(ReadaptConfig(**record.config), tok, record.labels)

    def correct(base: Path, adapter: Path) -> list[bool]:
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter)).eval()
        return reference_evaluate(model, val, tok.pad_token_id, batch_size=8).correct

    old = correct(world.old_base, world.adapter)
    new = correct(world.new_base, run_dir)
    assert new == record.val_correct
    assert row["old_service_val_accuracy"] == pytest.approx(sum(old) / len(old)) and sum(old) / len(old) > 0.8
    flips = sum(o and not n for o, n in zip(old, new)) / len(new)
    assert row["negative_flip_rate"] == pytest.approx(flips)
    return sum(new) / len(new)


def test_below_threshold_is_not_published_and_names_fallback(world, tmp_path: Path) -> None:
    fleet = load_fleet(str(write_fleet(world, tmp_path, n=1, steps=0)))
    fleet.adapters[0].threshold = 1.0
    rollout(fleet, progress=False)
    row = Ledger(fleet.ledger_url).rows()[0]
    assert row["val_accuracy"] < 1.0, "the fixture must miss a threshold of 1.0 with no training"
    assert row["state"] == "below-threshold" and "fallback" in row["error"]
    assert 0.0 < row["fallback_val_accuracy"] < row["old_service_val_accuracy"]  # the update hurt the old adapter
    assert not (Path(fleet.out) / "published" / "svc0").exists()


def test_broken_inputs_fail_one_adapter_and_the_rest_finish(world, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(world.adapter, corrupt)
    (corrupt / "adapter_model.safetensors").write_bytes(b"garbage")
    bad_label = tmp_path / "bad_label.jsonl"
    bad_label.write_text('{"text": "w1 w2", "label": "omega"}\n')
    path = write_fleet(world, tmp_path, n=4)
    spec = yaml.safe_load(path.read_text())
    spec["adapters"][0]["path"] = str(corrupt)
    spec["adapters"][1]["train"] = str(tmp_path / "missing.jsonl")
    spec["adapters"][2]["val"] = str(bad_label)
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.run([RELORA, "rollout", str(path), "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    rows = {r["name"]: r for r in Ledger(f"sqlite:///{tmp_path / 'out' / 'ledger.sqlite3'}").rows()}
    assert rows["svc0"]["state"] == "failed" and "unreadable" in rows["svc0"]["error"]
    assert rows["svc1"]["state"] == "failed" and "not found" in rows["svc1"]["error"]
    assert rows["svc2"]["state"] == "failed" and "outside the label set" in rows["svc2"]["error"]
    assert rows["svc3"]["state"] == "ready"
    status = subprocess.run([RELORA, "status", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "failed" in status.stdout


def test_fleet_file_errors_are_one_line(world, tmp_path: Path) -> None:
    path = write_fleet(world, tmp_path, n=2)
    spec = yaml.safe_load(path.read_text())
    spec["adapters"][1]["name"] = "svc0"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match="unique"):
        load_fleet(str(path))
    spec["adapters"][1] |= {"name": "svc1", "threshold": 2}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match=r"adapters\.1\.threshold"):
        load_fleet(str(path))


def test_kill_9_mid_rollout_then_rerun_finishes_everything_once(world, tmp_path: Path) -> None:
    path = write_fleet(world, tmp_path, n=3, steps=60)
    out = tmp_path / "out"
    proc = subprocess.Popen([RELORA, "rollout", str(path), "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ledger_path = out / "ledger.sqlite3"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once the second adapter is mid-job
        if ledger_path.is_file():
            states = [r["state"] for r in Ledger(f"sqlite:///{ledger_path}").rows()]
            if states[:2] == ["ready", "running"]:
                break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3.5)  # the dead worker's lease runs out
    rerun = subprocess.run([RELORA, "rollout", str(path), "--quiet"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    rows = _assert_all_ready_once(out, ["svc0", "svc1", "svc2"])
    assert [r["attempts"] for r in rows] == [1, 2, 1]


def test_two_rollouts_on_one_ledger_cooperate(world, tmp_path: Path) -> None:
    path = write_fleet(world, tmp_path, n=4, steps=30)  # jobs long enough that both processes get some
    procs = [subprocess.Popen([RELORA, "rollout", str(path), "--quiet"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    rows = _assert_all_ready_once(tmp_path / "out", [f"svc{i}" for i in range(4)])
    assert all(r["attempts"] == 1 for r in rows)  # no adapter was done twice
    assert len({r["worker"] for r in rows}) == 2  # and both rollouts did some of the work


def test_full_disk_stops_cleanly_and_ledger_tells_the_truth(world, tmp_path: Path, monkeypatch) -> None:
    import relora.fleet.worker as fleet_mod

    fleet = load_fleet(str(write_fleet(world, tmp_path, n=2)))
    real_publish = fleet_mod.publish

    def disk_full(run_dir: Path, target: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fleet_mod, "publish", disk_full)
    with pytest.raises(RolloutStopped, match="No space left"):
        rollout(fleet, progress=False)
    rows = Ledger(fleet.ledger_url).rows()
    assert rows[0]["state"] == "pending" and "rollout stopped" in rows[0]["error"] and rows[1]["state"] == "pending"
    monkeypatch.setattr(fleet_mod, "publish", real_publish)
    assert rollout(fleet, progress=False)["ready"] == 2


def test_local_workers_are_pinned_one_gpu_each(world, tmp_path: Path) -> None:
    """gpus: [1, 0] with two workers: each worker process sees only its GPU (CUDA_VISIBLE_DEVICES)."""
    fleet = load_fleet(str(write_fleet(world, tmp_path, n=4, steps=20, workers=2, gpus=[1, 0], gpus_optional=True)))
    assert rollout(fleet, progress=False)["ready"] == 4
    # On a machine without GPUs the jobs run on the CPU, pinned all the same: each worker process saw
    # one GPU id, and no two workers saw the same one
    seen = {r["worker"]: r["device"].split("CUDA_VISIBLE_DEVICES=")[1] for r in Ledger(fleet.ledger_url).rows()}
    assert len(seen) == 2, f"one worker did every job: {seen}"  # both workers ran
    assert set(seen.values()) == {"1", "0"}
    (tmp_path / "bad").mkdir()
    with pytest.raises(InputError, match="one GPU per worker"):
        load_fleet(str(write_fleet(world, tmp_path / "bad", n=1, workers=2, gpus=[0])))


def test_unwritable_output_root_is_refused(world, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fleet = load_fleet(str(write_fleet(world, tmp_path, n=1, out=str(blocker / "out"))))
    with pytest.raises(InputError, match="not writable"):
        rollout(fleet, progress=False)


def test_ray_executor_retries_a_killed_worker(world, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        fleet = load_fleet(str(write_fleet(world, tmp_path, n=2, steps=40, executor="ray",
                                           ray={"num_gpus": 1, "num_cpus": 1, "max_retries": 2})))
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(rollout(fleet, progress=False)))
        thread.start()
        ledger_path = Path(fleet.out) / "ledger.sqlite3"
        killed, deadline = None, time.time() + 300
        try:
            while killed is None and time.time() < deadline:
                # On a loaded machine the rollout may not have made its output directory yet
                running = ([r for r in Ledger(f"sqlite:///{ledger_path}").rows() if r["state"] == "running"]
                           if ledger_path.is_file() else [])
                if running and running[0]["pid"] != os.getpid():
                    killed = running[0]
                    os.kill(killed["pid"], signal.SIGKILL)
                time.sleep(0.2)
        finally:
            # ray.shutdown() under a live ray.get() makes Ray exit the whole process (status 1,
            # no pytest summary), which would hide this test's real failure
            thread.join(timeout=600)
        assert killed is not None and result.get("ready") == 2
        rows = {r["name"]: r for r in Ledger(fleet.ledger_url).rows()}
        assert rows[killed["name"]]["attempts"] == 2
        for row in rows.values():  # each job saw exactly the (fake) GPU Ray assigned it, and only that one
            assigned = row["device"].split("assigned GPUs ")[1]
            assert assigned in {"0", "1"} and f"CUDA_VISIBLE_DEVICES={assigned};" in row["device"], row["device"]
    finally:
        ray.shutdown()


def test_a_fleet_job_validates_its_config_once_and_checks_its_method_once(world, tmp_path: Path,
                                                                          monkeypatch) -> None:
    """One job: one ReadaptConfig validation and one method check (the plan), however many steps read it."""
    import relora.core.method.methods as methods
    import relora.core.run.readapt as recipe
    from relora.core.model.config import ReadaptConfig
    from relora.fleet.worker import run_job

    fleet = load_fleet(str(write_fleet(world, tmp_path, n=1, steps=2)))
    counts = {"validate": 0, "init": 0, "method": 0}
    validate, init, method_for = ReadaptConfig.model_validate, ReadaptConfig.__init__, methods.method_for

    def counted_validate(*args, **kwargs):
        counts["validate"] += 1
        return validate(*args, **kwargs)

    def counted_init(self, **kwargs):
        counts["init"] += 1
        init(self, **kwargs)

    def counted_method(*args, **kwargs):
        counts["method"] += 1
        return method_for(*args, **kwargs)

    monkeypatch.setattr(ReadaptConfig, "model_validate", counted_validate)
    monkeypatch.setattr(ReadaptConfig, "__init__", counted_init)
    import relora.fleet.config as fleet_config

    for module in (methods, recipe, fleet_config):  # every binding of it, deferred imports included
        monkeypatch.setattr(module, "method_for", counted_method)
    state, fields = run_job(fleet, fleet.adapters[0])
    assert state in ("ready", "below-threshold") and fields["steps"] is not None
    assert counts == {"validate": 1, "init": 0, "method": 1}

