"""One error type for bad input: the CLI prints it as one line and exits 2 (3 when the environment, not the
input, is at fault: an output that cannot be written or is busy)."""

from __future__ import annotations

import errno
from pathlib import Path


class InputError(Exception):
    """Bad user input: names the file and how to fix it."""

    def __init__(self, path: str | Path | None, problem: str, fix: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}; fix: {fix}")


class Unwritable(InputError):
    """The environment stops the command before work is lost: a read-only or busy output, a cache that cannot be
    created. Exit 3, like RolloutStopped; a subclass, so a fleet job still records it as its failure."""


class Unavailable(Unwritable):
    """Something the config names is not there (a Ray cluster at ray.address): exit 3, the environment's."""


class TrainingDiverged(Exception):
    """Loss became NaN or inf; nothing is kept."""


class RolloutStopped(Exception):
    """An output cannot be written (full disk, read-only, no permission): the command stops with exit 3,
    the ledger stays truthful, and a re-run resumes."""


FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
FATAL_ERRNOS = FULL_ERRNOS | {errno.EROFS, errno.EACCES}
FULL_MESSAGES = ("no space left", "disk is full", "disk quota", "storagefull", "readonly database", "read-only file system",
                 "unable to open database file", "disk i/o error")  # SQLite's words for a file it cannot write


def cannot_write(exc: BaseException) -> OSError | BaseException | None:
    """The error in exc's chain that means the output cannot be written (full disk, read-only, no
    permission), however a library wrapped it (SQLite's "database or disk is full", safetensors'
    IoError), or None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FATAL_ERRNOS:
            return seen
        if any(m in str(seen).lower() for m in FULL_MESSAGES):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def stopped(where: object, exc: BaseException) -> RolloutStopped:
    """The one-line stop for an output that cannot be written."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:120]
    return RolloutStopped(f"{where}: cannot write ({reason}); fix: free space or fix permissions, then re-run to resume")


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached a rollout: each job in flight is given back (pending) and the command exits
    with 128 + the signal number. A BaseException, so no job's `except Exception` mistakes it for a failure."""

    def __init__(self, signum: int, message: str = "") -> None:
        self.signum = signum
        super().__init__(message or f"stopped by signal {signum}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# A stop signal's handler raises Interrupted wherever the main thread happens to be. Inside a __del__ (the regex
# package's Group.__del__ was seen) Python swallows it ("Exception ignored in ..."), and the stop would be lost. So
# the handler also records it here, and the safe points (each claim, each training step) raise it again.
_STOP_PENDING: list[int] = []


def request_stop(signum: int) -> None:
    """Record a stop signal for the safe points (only the first counts)."""
    if not _STOP_PENDING:
        _STOP_PENDING.append(signum)


def stop_requested() -> bool:
    return bool(_STOP_PENDING)


def clear_stop() -> None:
    _STOP_PENDING.clear()


def raise_if_stopped() -> None:
    """At a safe point: raise Interrupted for a recorded stop signal, even if its first raise was swallowed."""
    if _STOP_PENDING:
        raise Interrupted(_STOP_PENDING[0])
