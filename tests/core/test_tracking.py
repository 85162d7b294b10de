"""Tracking sinks read back with their own readers: TensorBoard's event files and MLflow's local store
hold exactly what events.jsonl holds; nothing of them loads with `import relora`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import LEDGER_PASSWORD as MLFLOW_PASSWORD, fast_config
from relora.cli import main
from relora.core.method.record import RunRecord, read_events


def test_track_tensorboard_and_mlflow_hold_the_events(world, tmp_path: Path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "relora-test")
    cfg = fast_config(world, tmp_path / "out", "portllm-ft", test=None)
    (tmp_path / "cfg.yaml").write_text(json.dumps(cfg))
    run = CliRunner().invoke(main, ["readapt", "--config", str(tmp_path / "cfg.yaml"), "--track", "tensorboard,mlflow",
                                    "--quiet"])
    assert run.exit_code == 0, run.output
    out = tmp_path / "out"
    events, record = read_events(out), RunRecord.load(out)
    assert record.tracking is not None and record.tracking["tensorboard"] == "tensorboard"

    tb = EventAccumulator(str(out / "tensorboard"))
    tb.Reload()
    for tag, key in (("eval/accuracy", "val_accuracy"), ("eval/loss", "val_loss")):
        got = [(s.step, s.value) for s in tb.Scalars(tag)]
        assert got == [(e.step, pytest.approx(getattr(e, key), rel=1e-6)) for e in events]
    trained = [e for e in events if e.train_loss is not None]
    assert [s.step for s in tb.Scalars("train/loss")] == [e.step for e in trained] and trained

    client = MlflowClient(tracking_uri=store)
    mlrun = client.get_run(record.tracking["mlflow"])
    assert mlrun.data.params["training.steps"] == str(cfg["training"]["steps"])
    history = sorted((m.step, m.value) for m in client.get_metric_history(mlrun.info.run_id, "eval/accuracy"))
    assert history == [(e.step, pytest.approx(e.val_accuracy, rel=1e-9)) for e in events]
    assert mlrun.data.metrics["final/val_accuracy"] == pytest.approx(record.metrics.val_accuracy)
    assert client.get_experiment(mlrun.info.experiment_id).name == "relora-test"


def test_a_missing_sink_library_is_one_line(world, tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    cfg = fast_config(world, tmp_path / "out", "portllm")
    (tmp_path / "cfg.yaml").write_text(json.dumps(cfg))
    run = CliRunner().invoke(main, ["readapt", "--config", str(tmp_path / "cfg.yaml"), "--track", "mlflow"])
    assert run.exit_code == 2 and "pip install 'relora[mlflow]'" in run.output and len(run.output.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_nothing_of_the_sinks_or_the_page_loads_with_import_relora_or_help() -> None:
    code = ("import sys, relora; from click.testing import CliRunner; from relora.cli import main; "
            "CliRunner().invoke(main, ['--help']); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorboardX', 'tensorboard', 'mlflow')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_rollout_nests_each_service_under_one_fleet_run(world, tmp_path: Path, monkeypatch) -> None:
    import yaml
    from mlflow.tracking import MlflowClient

    from helpers import write_fleet

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    spec = yaml.safe_load(write_fleet(world, tmp_path, n=2, steps=4).read_text())
    spec["defaults"]["readapt"]["tracking"] = ["mlflow"]
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(spec))
    run = CliRunner().invoke(main, ["rollout", str(tmp_path / "fleet.yaml"), "--quiet"])
    assert run.exit_code == 0, run.output
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.info.run_name.startswith("fleet ")]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and sorted(r.info.run_name for r in children) == ["svc0", "svc1"]


class RefusingServer:
    """A local HTTP server that asks for basic auth and refuses every request (401), as a server does for
    a wrong password."""

    def __enter__(self) -> str:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
                self.end_headers()

            do_GET = do_POST = do_PATCH = _refuse

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


@pytest.mark.parametrize("server", ["unreachable", "refuses"])
def test_a_tracking_server_that_fails_keeps_the_run_and_never_prints_its_password(world, tmp_path: Path,
                                                                                  monkeypatch, server: str) -> None:
    """MLFLOW_TRACKING_URI with user:<password>@, nothing listening or a server answering 401: the run is saved
    (not stranded in its .partial), the record says the sink was not sent, and no output names the password."""
    if server == "refuses":
        with RefusingServer() as where:
            check_failing_tracking(world, tmp_path, monkeypatch, f"http://user:{MLFLOW_PASSWORD}@{where}/")
    else:
        check_failing_tracking(world, tmp_path, monkeypatch, f"http://user:{MLFLOW_PASSWORD}@127.0.0.1:9/")


def check_failing_tracking(world, tmp_path: Path, monkeypatch, uri: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    cfg = fast_config(world, tmp_path / "out", "portllm", test=None)
    (tmp_path / "cfg.yaml").write_text(json.dumps(cfg))
    run = CliRunner().invoke(main, ["readapt", "--config", str(tmp_path / "cfg.yaml"), "--track", "mlflow", "--quiet"])
    assert run.exit_code == 0, run.output
    assert MLFLOW_PASSWORD not in run.output and "Traceback" not in run.output
    record = RunRecord.load(tmp_path / "out")
    assert record.tracking["mlflow"].startswith("not sent") and MLFLOW_PASSWORD not in record.tracking["mlflow"]
    assert not list(tmp_path.glob(".*partial"))


def test_readapt_writes_relora_json_once_with_retention_and_tracking_in_it(world, tmp_path: Path,
                                                                           monkeypatch) -> None:
    """One linear recipe: the record is assembled (training, then retention, then tracking) and written once."""
    from helpers import write_probe
    from relora import ReadaptConfig, readapt

    writes: list[Path] = []
    save = RunRecord.save
    monkeypatch.setattr(RunRecord, "save", lambda self, path: (writes.append(Path(path)), save(self, path))[1])
    cfg = fast_config(world, tmp_path / "out", "portllm-ft", test=None, tracking=["tensorboard"],
                      update_probe=str(write_probe(tmp_path / "probe.txt")))
    record = readapt(ReadaptConfig(**cfg), progress=False)
    assert len(writes) == 1
    saved = RunRecord.load(tmp_path / "out")
    assert saved.retention is not None and saved.tracking == {"tensorboard": "tensorboard"}
    assert saved.model_dump() == record.model_dump()
