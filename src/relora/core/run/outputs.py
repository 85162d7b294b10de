"""Run outputs: built in a hidden sibling work directory, renamed into place at the end.

The work directory survives a crash, so a re-run with the same config resumes
(for example the search's probe store) instead of redoing work; a re-run with
a different config starts it afresh. Inputs are never written to.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from relora.errors import FULL_ERRNOS, InputError, Unwritable
from relora.io import follow_umask, resolved

FINGERPRINT = ".fingerprint"
MARKER = ".relora-output"  # in every output relora writes: --force replaces only a directory that holds it


def check_out(out: str | Path, *, flag: str, inputs: Iterable[str | Path | tuple[str, str | Path]] = ()) -> Path:
    """The rule for every output directory (readapt's --out, a fleet's out:, the race's --out), checked before
    anything is written: never empty (an unset variable would mean the current directory), never /, the current
    directory or one of its ancestors, never inside an input and never holding one. An input is a path, or
    (what it is, path) for the message. Returns the output resolved."""
    if not str(out).strip():
        raise InputError(f"{flag} {str(out)!r}", "is empty, which would mean the current directory",
                         f"give {flag} a directory of its own (is a variable unset?)")
    root, cwd = Path(out).resolve(), Path.cwd().resolve()
    where = ("is /" if root == Path(root.anchor) else "is the current directory" if root == cwd
             else "is an ancestor of the current directory" if cwd.is_relative_to(root) else None)
    if where:
        raise InputError(out, where, f"give {flag} a new directory of its own, e.g. {flag} runs/<name>")
    for spec in inputs:
        what, path = spec if isinstance(spec, tuple) else (f"input {spec}", spec)
        src = resolved(path)
        if src is None:  # a looping link: the input's own check names it, and in a fleet fails only its row
            continue
        if root == src:
            raise InputError(out, f"is {what} itself, which --force would delete", f"choose a new {flag}")
        if src.is_dir() and root.is_relative_to(src):
            raise InputError(out, f"is inside {what}", f"choose {flag} outside every input")
        if src.is_relative_to(root):  # --force (or a second update's rollout) would overwrite it
            raise InputError(out, f"contains {what}", f"choose {flag} that holds none of the inputs")
    return root


def check_replaceable(out: Path, *, flag: str) -> None:
    """An existing output may be replaced only when relora wrote it (it holds MARKER) or it is an empty
    directory: anything else is refused, naming what is there."""
    if not out.exists() or (out.is_dir() and (out / MARKER).is_file()):
        return
    if not out.is_dir():
        raise InputError(out, "is a file, not an output relora wrote", f"choose another {flag}")
    names = sorted(p.name for p in out.iterdir())
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise InputError(out, f"holds {shown}, which relora did not write (no {MARKER} in it)",
                         f"choose another {flag}, or move those files away yourself")


def write_marker(directory: Path, what: str) -> None:
    (directory / MARKER).write_text(json.dumps({"written_by": "relora", "what": what}) + "\n")


class RunDir:
    def __init__(self, out: str, force: bool, inputs: list[str], fingerprint: dict[str, Any]) -> None:
        self.out = check_out(out, flag="--out", inputs=inputs)
        if self.out.exists() and not force:
            raise InputError(out, "already exists", "choose a new --out or pass --force to replace it")
        check_replaceable(self.out, flag="--out")
        self.work = self.out.parent / f".{self.out.name}.partial"
        self.fingerprint = fingerprint

    def open(self, input_hashes: dict[str, str] | None = None) -> None:
        """Create (or resume) the work directory; called once every input is validated. A work directory left by
        another config or other input contents (a base replaced in place) is started afresh. Two runs of one --out
        (a retried job started twice) would share the work directory: the second stops here, naming the first."""
        self.key = hashlib.sha256(json.dumps([self.fingerprint, input_hashes], sort_keys=True,
                                             default=str).encode()).hexdigest()
        self._lock()
        marker = self.work / FINGERPRINT
        if self.work.exists() and (not marker.is_file() or marker.read_text() != self.key):
            shutil.rmtree(self.work)
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            marker.write_text(self.key)
            write_marker(self.work, "readapt run")
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise  # readapt turns it into a one-line stop (exit 3)
            raise Unwritable(self.out, f"cannot write output ({exc.strerror})", "choose a writable --out") from exc

    def path(self, name: str) -> Path:
        return self.work / name

    def _lock(self) -> None:
        """An exclusive lock on a sibling file, held until commit or discard; the kernel drops it when the process
        dies, so a dead run's work directory is resumed, as before."""
        lock = self.out.parent / f".{self.out.name}.lock"
        try:
            self._lock_fh = lock.open("a+")
        except OSError:
            self._lock_fh = None  # a read-only parent: open() reports it in one line below
            return
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.seek(0)
            holder = self._lock_fh.read().strip() or "another process"
            self._lock_fh.close()
            self._lock_fh = None
            raise Unwritable(self.out, f"another run is writing it now ({holder})",
                             "wait for that run to end, or stop it, then re-run (it resumes)") from None
        self._lock_fh.seek(0)
        self._lock_fh.truncate()
        self._lock_fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self._lock_fh.flush()

    def release(self) -> None:
        """Drop the lock (the work directory stays, to resume from)."""
        if getattr(self, "_lock_fh", None) is not None:
            Path(self._lock_fh.name).unlink(missing_ok=True)
            self._lock_fh.close()
            self._lock_fh = None

    def commit(self) -> Path:
        """Move the finished work directory to --out (replacing it under --force)."""
        (self.work / FINGERPRINT).unlink(missing_ok=True)
        follow_umask(self.work)
        old = None
        try:
            if self.out.exists():
                old = self.out.parent / f".{self.out.name}.replaced"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(self.out, old)
            os.replace(self.work, self.out)
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise
            self.release()
            raise Unwritable(self.out, f"cannot be replaced ({exc.strerror}); the finished run is kept in {self.work}",
                             "free --out (or move the finished run into place yourself); a re-run resumes") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.release()
        return self.out

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        self.release()


class EventLog:
    """events.jsonl, appended and flushed per event so a live run can be tailed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("")  # a resumed run retrains, so earlier events are void

    def append(self, event: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(event) + "\n")
            fh.flush()
