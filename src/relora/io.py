"""Files written so that nothing is ever half-written, the cache root, and content hashes.

The one place for each: every output in relora is built in a hidden temporary
sibling and renamed into place, so a crash leaves the old state or the new one,
never a mix, and a re-run finds either a finished output or nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from relora.errors import InputError, Unwritable

HASH_CHUNK = 1 << 22


def cache_root(explicit: str | None = None) -> Path:
    """--cache-dir, else $RELORA_CACHE, else ~/.cache/relora (created)."""
    root = explicit or os.environ.get("RELORA_CACHE") or Path.home() / ".cache" / "relora"
    path = Path(root)
    if path in _WRITABLE:
        return path
    for verb, attempt in (("create", lambda: path.mkdir(parents=True, exist_ok=True)),
                          # an existing (empty) directory on a read-only file system fails only here
                          ("write in", lambda: tempfile.TemporaryFile(dir=path).close())):
        try:
            attempt()
        except OSError as exc:
            raise Unwritable(path, f"cannot {verb} the cache directory ({exc.strerror})",
                             "point cache_dir or RELORA_CACHE at a writable directory") from None
    _WRITABLE.add(path)
    return path


_WRITABLE: set[Path] = set()  # cache roots found writable in this process (checked once each)


def read_memo(path: Path, kind: type[dict] | type[list]) -> Any:
    """A cache's memo file (hashes, checked weights): empty when missing or damaged, since it only saves work
    that is redone at once."""
    try:
        value = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else kind()
    except (OSError, ValueError):
        return kind()
    return value if isinstance(value, kind) else kind()


def resolved(path: str | Path) -> Path | None:
    """The path made absolute with links followed; None for a link that loops (the input's own check names it)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):
        return None


def check_regular_file(path: str | Path, what: str, fix: str) -> Path:
    """A file input that is a regular file (or a link to one), else one line saying what it is instead."""
    p = Path(path)
    try:
        if p.is_file():
            return p
        where = ("is a directory" if p.is_dir() else "not found" if not p.exists() and not p.is_symlink()
                 else "is a broken or looping link" if p.is_symlink() and not p.exists() else "is not a regular file")
    except OSError as exc:  # a link loop (ELOOP), a name too long
        where = f"cannot be read ({exc.strerror})"
    raise InputError(p, f"{what} {where}", fix)


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; read once, before any worker thread starts writing
    os.umask(mask)
    return mask


def umask_mode(kind: str) -> int:
    """The mode a plain open() or mkdir() would give under this process's umask: temp files and directories
    are made 0600 and 0700, which a serving engine running as another user could not read."""
    mask = _umask()
    return (0o777 if kind == "dir" else 0o666) & ~mask


def follow_umask(root: Path) -> None:
    """Give a finished output's files and directories the modes the umask asks for: some writers (safetensors'
    save_file, temp files) make them 0600, which a serving engine running as another user cannot read."""
    os.chmod(root, umask_mode("dir"))
    for path in root.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, umask_mode("dir" if path.is_dir() else "file"))


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write text or bytes to a temp file beside path, then rename it over path."""
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data.encode() if isinstance(data, str) else data))


def atomic_write_with(path: Path, write: Callable[[Path], object]) -> None:
    """Let write(tmp) fill a temp file beside path (e.g. safetensors' save_file), then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, umask_mode("file"))  # as cp, PEFT and transformers would leave it
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty hidden directory beside target; on success it is renamed to target.

    An existing target is kept (and the new one discarded) unless replace is true.
    On an error the temp directory is removed and target is untouched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        follow_umask(tmp)
        if target.exists() and not replace:
            return
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
            os.replace(target, old / "x")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(paths: list[Path], cache_dir: Path) -> str:
    """sha256 over the files' names and hashes; per-file hashes are memoised by (path, size, mtime)."""
    memo_path = cache_dir / "file-hashes.json"
    memo: dict[str, str] = read_memo(memo_path, dict)
    digest = hashlib.sha256()
    changed = False
    for path in sorted(paths):
        stat = path.stat()
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in memo:
            memo[key] = file_sha256(path)
            changed = True
        digest.update(path.name.encode() + b"\0" + memo[key].encode())
    if changed:
        atomic_write(memo_path, json.dumps(memo, indent=0))
    return digest.hexdigest()
