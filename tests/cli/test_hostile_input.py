"""Issue #21's cases, each through the real command, with the inputs hashed before and after: labels that
would mislead, a lease shorter than its heartbeats, and ledger passwords that must never be printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from helpers import LEDGER_PASSWORD, TinyWorld, write_fleet
from relora.cli import main
from relora.core.method.record import RunRecord
from test_bad_input import data_file, readapt_args, run_cli, tree_hash, world_inputs


@pytest.mark.parametrize("label, needle", [(None, "label is null, not a string"), (1, "label is 1, not a string")])
def test_a_label_that_is_not_text_is_refused_naming_the_line(world: TinyWorld, tmp_path: Path, label, needle) -> None:
    train = data_file(tmp_path, [{"text": "w1 sun", "label": "alpha"}, {"text": "w2 moon", "label": label}])
    before = tree_hash(*world_inputs(world), train)
    line = run_cli(readapt_args(world, tmp_path / "out", train=train), 2, needle)
    assert "line 2" in line and str(train) in line
    assert tree_hash(*world_inputs(world), train) == before and not (tmp_path / "out").exists()


def test_a_task_with_one_label_is_refused(world: TinyWorld, tmp_path: Path) -> None:
    rows = [{"text": f"w{i} sun", "label": "alpha"} for i in range(12)]
    train, val = data_file(tmp_path, rows), data_file(tmp_path, rows, "val.jsonl")
    run_cli(readapt_args(world, tmp_path / "out", train=train, val=val), 2, "at least two labels")
    assert not (tmp_path / "out").exists()


def test_validation_examples_shared_with_training_are_warned_and_recorded(world: TinyWorld, tmp_path: Path) -> None:
    train = [json.loads(line) for line in world.train.read_text().splitlines()]
    val = [json.loads(line) for line in world.val.read_text().splitlines()]
    leaked = data_file(tmp_path, train[:5] + [v for v in val if v["text"] not in {t["text"] for t in train}],
                       "val.jsonl")
    run = CliRunner().invoke(main, readapt_args(world, tmp_path / "out", val=leaked) + ["--method", "portllm"])
    assert run.exit_code == 0, run.output
    assert "5 of its examples also appear in" in run.stderr
    assert RunRecord.load(tmp_path / "out").n_examples["val_in_train"] == 5


def test_a_lease_shorter_than_three_heartbeats_is_refused(world: TinyWorld, tmp_path: Path) -> None:
    path = write_fleet(world, tmp_path, n=1, lease_s=0.05)
    line = run_cli(["rollout", str(path), "--quiet"], 2, "lease_s")
    assert "at least 3 s" in line and "heartbeat" in line
    assert not (tmp_path / "out").exists()


SECRET = LEDGER_PASSWORD


@pytest.mark.parametrize("url", [f"postgresql+nodriver://relora:{SECRET}@db.example/ledger",
                                 f"postgresql+psycopg://relora:{SECRET}@db.example:notaport/ledger",
                                 f"mysql+nodriver://relora:{SECRET}@db.example/ledger"])
def test_no_command_prints_the_ledger_password(world: TinyWorld, tmp_path: Path, url: str) -> None:
    path = write_fleet(world, tmp_path, n=1, ledger=url)
    outputs = [CliRunner().invoke(main, ["rollout", str(path), "--quiet"])]
    (tmp_path / "out").mkdir(exist_ok=True)
    outputs += [CliRunner().invoke(main, [cmd, str(tmp_path / "out"), "--ledger", url]) for cmd in ("status", "report")]
    for run in outputs:
        assert run.exit_code == 2, run.output
        assert SECRET not in run.output and SECRET not in (run.stderr or ""), run.output
        assert "***" in run.output


def test_a_second_run_on_one_out_stops_at_once_naming_the_first(world: TinyWorld, tmp_path: Path) -> None:
    """A retried job started twice: the second readapt on --out stops in one line while the first holds its
    work directory, and runs (resuming it) once the first has died."""
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from relora.core.run.outputs import RunDir; "
        f"r = RunDir(Path({str(out)!r}), False, [], {{}}); r.open(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        line = run_cli(readapt_args(world, out) + ["--method", "portllm"], 3, "another run is writing it now")
        assert f"pid {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    run = CliRunner().invoke(main, readapt_args(world, out) + ["--method", "portllm"])
    assert run.exit_code == 0, run.output
    assert out.is_dir() and not list(tmp_path.glob(".out*"))  # the dead run's work directory resumed, no lock left


@pytest.mark.parametrize("signum, code", [(15, 143), (2, 130)])
def test_a_stop_signal_ends_the_whole_rollout_cleanly(world: TinyWorld, tmp_path: Path, signum: int, code: int) -> None:
    """SIGTERM (or Ctrl-C's SIGINT) to a workers: 2 rollout: every worker gives its job back and ends, the parent
    exits 128 + signal with one line, no row is left running, nothing is published after the signal, and a
    re-run finishes the fleet."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from relora.fleet.ledger import Ledger

    path = write_fleet(world, tmp_path, n=4, steps=60, workers=2)
    out = tmp_path / "out"
    relora = str(Path(sys.executable).with_name("relora"))
    proc = subprocess.Popen([relora, "rollout", str(path), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ledger_file, deadline = out / "ledger.sqlite3", time.time() + 120
    while time.time() < deadline:
        if ledger_file.is_file() and any(r["state"] == "running" for r in Ledger(f"sqlite:///{ledger_file}").rows()):
            break
        time.sleep(0.2)
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout.split()
    published_at_signal = set(os.listdir(out / "published")) if (out / "published").is_dir() else set()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "went back to pending" in lines[0] and "Traceback" not in err, err
    assert len(children) >= 2
    for _ in range(50):  # multiprocessing's resource tracker ends a moment after its parent
        alive = subprocess.run(["ps", "-o", "pid=,args=", "-p", ",".join(children)], capture_output=True,
                               text=True).stdout.strip()
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"processes outlived the rollout: {alive}"
    rows = Ledger(f"sqlite:///{ledger_file}").rows()
    assert not any(r["state"] == "running" for r in rows)
    published = set(os.listdir(out / "published")) if (out / "published").is_dir() else set()
    assert published == published_at_signal
    if signum == signal.SIGTERM:  # one re-run is enough to show the resume
        rerun = CliRunner().invoke(main, ["rollout", str(path), "--quiet"])
        assert rerun.exit_code == 0 and '"ready": 4' in rerun.output, rerun.output


def _latin1_config(t: Path) -> list[str]:
    path = t / "cfg.yaml"
    path.write_bytes(b"method: portllm\n# caf\xe9\n")
    return ["--config", str(path)]


def _deep(t: Path) -> list[str]:
    path = t / "deep.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    return ["--train", str(path)]


def _surrogate(t: Path) -> list[str]:
    path = t / "sur.jsonl"
    path.write_text('{"text": "w1 sun", "label": "alpha"}\n{"text": "w2 \\ud800 moon", "label": "beta"}\n')
    return ["--train", str(path)]


# case -> (extra CLI words built from tmp_path, words the one line must hold, exit code: 2 bad input, 3 environment)
ONE_LINERS = {
    "a config with a Latin-1 byte": (_latin1_config, "is not UTF-8", 2),
    "overrides training=5 training.lr=1e-4": (lambda t: ["training=5", "training.lr=1e-4"], "another override set", 2),
    "infinite search bounds": (lambda t: ["search.alpha_bounds=[-.inf,.inf]"], "must be finite", 2),
    "--device cuda without CUDA": (lambda t: ["--device", "cuda:7"], "was asked for", 2),
    "a cache on a read-only file system": (lambda t: ["cache_dir=/proc/relora-cache"], "cannot create the cache", 3),
    "an existing cache directory that cannot be written": (lambda t: ["cache_dir=/proc"], "cannot write in the cache", 3),
    "100,000 nested brackets": (_deep, "nests too deeply", 2),
    "a lone surrogate escape": (_surrogate, "lone surrogate", 2),
}


@pytest.mark.parametrize("case", sorted(ONE_LINERS))
def test_each_hostile_input_is_one_line(world: TinyWorld, tmp_path: Path, case: str) -> None:
    make, needle, code = ONE_LINERS[case]
    before = tree_hash(*world_inputs(world))
    run_cli(readapt_args(world, tmp_path / "out") + ["--method", "portllm"] + make(tmp_path), code, needle)
    assert tree_hash(*world_inputs(world)) == before
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("memo", ["file-hashes.json", "finite-weights.json", "searches/known-points.json"])
def test_a_damaged_cache_memo_is_rebuilt(world: TinyWorld, tmp_path: Path, memo: str) -> None:
    cache = tmp_path / "cache"
    (cache / "searches").mkdir(parents=True)
    (cache / memo).write_text("{broken")
    args = readapt_args(world, tmp_path / "out") + ["--method", "relora", f"cache_dir={cache}", "data.val_size=8"]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    assert (tmp_path / "out" / "relora.json").is_file()


def _mount(args: list[str]) -> None:
    import subprocess

    run = subprocess.run(["mount", *args], capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot mount here: {run.stderr.strip()}")


def test_report_on_a_read_only_rollout_is_one_line(world: TinyWorld, tmp_path: Path) -> None:
    import subprocess

    rolled = CliRunner().invoke(main, ["rollout", str(write_fleet(world, tmp_path, n=1, steps=2)), "--quiet"])
    assert rolled.exit_code == 0, rolled.output
    view = tmp_path / "ro"
    view.mkdir()
    _mount(["--bind", str(tmp_path / "out"), str(view)])
    try:
        _mount(["-o", "remount,bind,ro", str(view)])
        before = tree_hash(view)
        run_cli(["report", str(view)], 3, "cannot write the report there")
        assert tree_hash(view) == before
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_force_onto_an_out_that_cannot_be_renamed_is_one_line_and_resumes(world: TinyWorld, tmp_path: Path) -> None:
    """--out is a mount point (renaming it fails with EBUSY): one line says where the finished run is."""
    import subprocess

    out = tmp_path / "out"
    out.mkdir()
    _mount(["--bind", str(out), str(out)])
    try:
        line = run_cli(readapt_args(world, out) + ["--method", "portllm", "--force"], 3, "cannot be replaced")
        assert ".out.partial" in line and (tmp_path / ".out.partial" / "relora.json").is_file()
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)
    rerun = CliRunner().invoke(main, readapt_args(world, out) + ["--method", "portllm", "--force"])
    assert rerun.exit_code == 0 and (out / "relora.json").is_file(), rerun.output


def test_a_ledger_made_read_only_mid_rollout_stops_in_one_line(world: TinyWorld, tmp_path: Path) -> None:
    """The ledger's directory is made immutable (chattr +i) while jobs run: one line (exit 3), no traceback;
    once it is writable again, a re-run releases the stranded row and finishes the fleet."""
    import subprocess
    import sys
    import time

    from relora.fleet.ledger import Ledger

    store = tmp_path / "store"
    store.mkdir()
    url = f"sqlite:///{store / 'ledger.sqlite3'}"
    path = write_fleet(world, tmp_path, n=3, steps=40, ledger=url)
    relora = str(Path(sys.executable).with_name("relora"))
    proc = subprocess.Popen([relora, "rollout", str(path), "--quiet"], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (
                (store / "ledger.sqlite3").is_file() and any(r["state"] == "running" for r in Ledger(url).rows())):
            time.sleep(0.2)
        locked = subprocess.run(["chattr", "+i", str(store)], capture_output=True, text=True)
        if locked.returncode != 0:
            proc.kill()
            pytest.skip(f"cannot make a directory immutable here: {locked.stderr.strip()}")
        _, err = proc.communicate(timeout=300)
    finally:
        subprocess.run(["chattr", "-i", str(store)], check=False)
    lines = [ln for ln in err.splitlines() if ln.startswith("relora:")]
    assert proc.returncode == 3 and len(lines) == 1 and "Traceback" not in err, err
    assert "cannot write" in lines[0] and "fix:" in lines[0]
    rerun = CliRunner().invoke(main, ["rollout", str(path), "--quiet"])
    assert rerun.exit_code == 0 and '"ready": 3' in rerun.output, rerun.output
