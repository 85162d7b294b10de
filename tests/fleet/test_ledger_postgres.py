"""The ledger on PostgreSQL, unchanged: a real server in a temp dir with password authentication, two rollouts
sharing it, and the password in no output, report or log.

Skipped where no PostgreSQL server binaries are installed (initdb, pg_ctl)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from relora.fleet.ledger import Ledger

from helpers import LEDGER_PASSWORD, RELORA, write_fleet

PG_BIN = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15")] + \
    [Path(p).parent for p in (shutil.which("initdb") or "",) if p]


def _pg_tool(name: str) -> str | None:
    found = [d / name for d in PG_BIN if (d / name).is_file()]
    return str(found[0]) if found else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; run it as nobody then."""
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server binaries here")
    pytest.importorskip("psycopg")
    root = Path(tempfile.mkdtemp(prefix="relora-pg-"))  # not under pytest's root-only tmp: nobody must reach it
    os.chmod(root, 0o777)
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    os.chmod(sock, 0o777)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"
    try:  # a machine that cannot start a server (no runuser, no nobody) skips; our code is not at fault there
        pwfile = root / "pw"
        pwfile.write_text(LEDGER_PASSWORD + "\n")
        os.chmod(pwfile, 0o644)
        subprocess.run(_as_postgres_user([initdb, "-D", str(data), "-U", "relora", "--auth=scram-sha-256",
                                          f"--pwfile={pwfile}"]), check=True, capture_output=True, timeout=120)
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-o", opts, "-w", "-l", str(root / "log"),
                                          "start"]), check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server here: {exc}")
    try:
        yield f"postgresql+psycopg://relora:{LEDGER_PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_rollouts_share_a_postgres_ledger(world, tmp_path: Path, postgres_url: str) -> None:
    path = write_fleet(world, tmp_path, n=3, ledger=postgres_url)
    procs = [subprocess.Popen([RELORA, "rollout", str(path), "--quiet"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    printed = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        printed += [out, err]
    rows = Ledger(postgres_url).rows()
    assert [r["state"] for r in rows] == ["ready"] * 3
    assert all(r["attempts"] == 1 for r in rows)  # claimed once each, across both processes
    assert sorted(p.name for p in (tmp_path / "out" / "published").iterdir()) == ["svc0", "svc1", "svc2"]
    status = subprocess.run([RELORA, "status", str(tmp_path / "out"), "--ledger", postgres_url],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "ready" in status.stdout
    report = subprocess.run([RELORA, "report", str(tmp_path / "out"), "--ledger", postgres_url],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    printed += [status.stdout, status.stderr, report.stdout, report.stderr]
    assert not [text for text in printed if LEDGER_PASSWORD in text]
    written = [f for f in (tmp_path / "out").rglob("*") if f.is_file() and LEDGER_PASSWORD.encode() in f.read_bytes()]
    assert not written, written  # the session-wide grep (conftest.py) checks every test's files as well
    assert yaml.safe_load(path.read_text())["ledger"] == postgres_url
