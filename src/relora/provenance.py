"""Provenance for results: git revision, package versions, input hashes."""

from __future__ import annotations

import functools
import platform
import resource
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("relora", "torch", "transformers", "peft", "safetensors", "botorch", "gpytorch", "optuna", "numpy")


@functools.cache
def git_revision() -> str | None:
    """The relora checkout's HEAD (with '+dirty' if modified), when run from one. Read once per process:
    a long run's records name the code it loaded, not a checkout that moved on while it ran."""
    src = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def peak_rss_mb() -> float:
    """This process's high-water RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across
    exec, so a child started from a big parent would report the parent's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def provenance() -> dict[str, object]:
    """Where a result came from: the code's revision, the packages, and when (UTC)."""
    from datetime import datetime, timezone

    return {"git_revision": git_revision(), "packages": package_versions(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
