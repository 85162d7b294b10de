"""GGUF de-quantization: a llama.cpp-style Q8_0 file becomes a safetensors base that matches its source."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import write_tiny_gguf
from relora.core.model.models import load_model, load_tokenizer
from relora.core.model.resolve import resolve_base
from relora.errors import InputError


def test_gguf_is_dequantized_once_into_a_matching_safetensors_base(tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    converted = resolve_base(str(tmp_path / "tiny.gguf"), tmp_path / "cache")
    assert {p.name for p in converted.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    model = load_model(converted)
    ours, theirs = model.state_dict(), source.state_dict()
    assert set(ours) == set(theirs)
    for name, weight in theirs.items():
        bound = float(weight.abs().max()) / 127 if weight.ndim == 2 else 0.0  # Q8_0: one step of amax/127 (fp16 scale)
        assert float((ours[name] - weight).abs().max()) <= bound + 1e-7, name  # q/k rows un-permuted too
    ids = torch.tensor([[1, 104, 105, 32, 97, 116]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, source(input_ids=ids).logits, atol=0.05)
    assert load_tokenizer(converted)("hi a")["input_ids"][-2:] == [105, 256]  # the byte-level merge " a"
    stamp = (converted / "model.safetensors").stat().st_mtime_ns
    assert resolve_base(str(tmp_path / "tiny.gguf"), tmp_path / "cache") == converted  # cached, not redone
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_truncated_gguf_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "tiny.gguf")
    data = (tmp_path / "tiny.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="could not read GGUF"):
        resolve_base(str(tmp_path / "cut.gguf"), tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache" / "gguf").iterdir()]
