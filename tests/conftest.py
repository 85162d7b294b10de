"""Session fixtures built from tests/helpers.py: the tiny world every readapt test shares."""

from __future__ import annotations

import os
import tempfile

import pytest

from helpers import TinyWorld, build_world


def pytest_configure(config: pytest.Config) -> None:
    """The suite writes only inside its sandbox: a cache, matplotlib's config and a home of its own, so no test
    reaches the real ~/.cache/relora or ~/.cache/matplotlib (subprocesses inherit these too)."""
    global _REAL_CACHES
    _REAL_CACHES = {d: _listing(d) for d in (os.path.expanduser(f"~/.cache/{n}") for n in WATCHED)}
    sandbox = tempfile.mkdtemp(prefix="relora-tests-")
    for name, sub in (("RELORA_CACHE", "cache"), ("MPLCONFIGDIR", "matplotlib"), ("XDG_CACHE_HOME", "xdg-cache"),
                      ("HOME", "home")):
        os.environ[name] = os.path.join(sandbox, sub)
    os.makedirs(os.environ["HOME"], exist_ok=True)


WATCHED = ("relora", "matplotlib")  # the real caches the suite must never write into
_REAL_CACHES: dict[str, dict[str, int]] = {}


def _listing(root: str) -> dict[str, int]:
    """Every file under root with its modification time (ns); empty when root does not exist."""
    found = {}
    for parent, _, files in os.walk(root):
        for f in files:
            path = os.path.join(parent, f)
            try:
                found[path] = os.stat(path, follow_symlinks=False).st_mtime_ns
            except OSError:
                pass
    return found


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    return build_world(tmp_path_factory.mktemp("world"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No file any test left behind (outputs, reports, pages, logs, ledgers, binary or not) holds the password
    that the suite's ledger and MLflow URLs carry; the YAML files the tests wrote as inputs are the one place
    it belongs."""
    from helpers import LEDGER_PASSWORD

    touched = [path for root, before in _REAL_CACHES.items() for path, mtime in _listing(root).items()
               if before.get(path) != mtime]
    if touched:
        print(f"\nthe suite wrote {len(touched)} file(s) into the real caches, e.g. {touched[0]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return  # no test made a temp directory
    leaks = [f for f in factory.getbasetemp().rglob("*") if f.is_file() and not f.is_symlink()
             and f.suffix not in (".yaml", ".yml") and LEDGER_PASSWORD.encode() in f.read_bytes()]
    if leaks:
        print(f"\nthe ledger password is written in {len(leaks)} file(s), e.g. {leaks[0]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
