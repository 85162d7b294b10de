"""Safetensors weights read one tensor at a time, and the checks two bases must pass."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from relora.errors import InputError


def model_files(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]


class WeightReader:
    """Reads one tensor at a time from a (possibly sharded) safetensors model."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._where: dict[str, Path] = {}
        for shard in sorted(model_dir.glob("*.safetensors")):
            with safe_open(shard, framework="pt") as fh:
                for name in fh.keys():
                    self._where[name] = shard
        self.config = json.loads((model_dir / "config.json").read_text())

    def names(self) -> list[str]:
        return sorted(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        with safe_open(self._where[name], framework="pt") as fh:
            return tuple(fh.get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        with safe_open(self._where[name], framework="pt") as fh:
            return fh.get_tensor(name)


def check_same_architecture(old: WeightReader, new: WeightReader, modules: list[str]) -> None:
    """Both bases must agree on architecture and on the shapes of adapted modules."""
    # GGUF-converted configs may lack "architectures"; model_type is always there.
    old_arch, new_arch = old.config.get("model_type"), new.config.get("model_type")
    if old_arch != new_arch:
        raise InputError(new.model_dir, f"architecture {new_arch} differs from the old base's {old_arch}",
                         "pass two versions of the same model")
    for module in modules:
        name = f"{module}.weight"
        for reader in (old, new):
            if name not in reader:
                raise InputError(reader.model_dir, f"module {module} is missing",
                                 "pass bases with the adapter's target modules")
        if old.shape(name) != new.shape(name):
            raise InputError(new.model_dir, f"module {module} has shape {new.shape(name)}, old base {old.shape(name)}",
                             "pass two versions of the same model")


