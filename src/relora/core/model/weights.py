"""Safetensors weights read one tensor at a time, and the checks two bases must pass."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from relora.errors import InputError


TORCH_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files transformers loads from this directory (model.safetensors, else the shards its
    index names), which are what relora reads, hashes and checks. A directory where that choice is ambiguous
    (extra safetensors files beside them, or PyTorch weights that transformers would prefer) is refused."""
    present = sorted(model_dir.glob("*.safetensors"))
    index = model_dir / "model.safetensors.index.json"
    if (model_dir / "model.safetensors").is_file():
        chosen = [model_dir / "model.safetensors"]
    elif index.is_file():
        try:
            chosen = sorted({model_dir / f for f in json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(index, "is not a safetensors index (no weight_map)", "restore the model's index file") from exc
    else:
        torch_files = [n for n in TORCH_WEIGHTS if (model_dir / n).exists()]
        names = ", ".join(p.name for p in present) or "none"
        why = f"holds {', '.join(torch_files)}, which transformers loads, " if torch_files else ""
        raise InputError(model_dir, f"{why}and no model.safetensors or model.safetensors.index.json "
                         f"(safetensors files: {names})",
                         "save the model with save_pretrained(safe_serialization=True), or name its one weight file "
                         "model.safetensors")
    extra = [p.name for p in present if p not in chosen]
    if extra:
        raise InputError(model_dir, f"holds {', '.join(extra)} beside the weights transformers loads "
                         f"({', '.join(p.name for p in chosen)})",
                         "move the extra safetensors files out of the model directory")
    return chosen


def model_files(model_dir: Path) -> list[Path]:
    return weight_files(model_dir) + [model_dir / "config.json"]


class WeightReader:
    """Reads one tensor at a time from a (possibly sharded) safetensors model."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._where: dict[str, Path] = {}
        for shard in weight_files(model_dir):
            try:
                with safe_open(shard, framework="pt") as fh:
                    for name in fh.keys():
                        self._where[name] = shard
            except Exception as exc:  # safetensors raises its own error type for a cut or corrupt header
                raise InputError(shard, f"unreadable safetensors file ({exc})",
                                 "restore the model file from a good copy") from exc
        try:
            self.config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(model_dir / "config.json", f"invalid JSON ({exc.__class__.__name__})",
                             "restore the model's config.json") from exc

    def names(self) -> list[str]:
        return sorted(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        with safe_open(self._where[name], framework="pt") as fh:
            return tuple(fh.get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        try:
            with safe_open(self._where[name], framework="pt") as fh:
                return fh.get_tensor(name)
        except Exception as exc:  # a file cut after its header reads fine until the data
            raise InputError(self._where[name], f"unreadable tensor {name} ({exc})",
                             "restore the model file from a good copy") from exc

    def module_names(self) -> list[str]:
        """Names of the modules that own a weight matrix, as PEFT's target_modules match them."""
        return [n.removesuffix(".weight") for n in self.names() if n.endswith(".weight")]


def check_finite(reader: WeightReader) -> None:
    """NaN or inf anywhere in a base would poison the delta, every probe and every step."""
    for name in reader.names():
        tensor = reader.get(name)
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputError(reader.model_dir, f"weight {name} has NaN or infinite values",
                             "restore the model from a good copy")


def check_targets_exist(reader: WeightReader, targets: list[str] | str, where: str) -> None:
    """Each target module name matches a module of the base, as PEFT would match it (a suffix)."""
    names = reader.module_names()
    for target in [targets] if isinstance(targets, str) else targets:
        if not any(n == target or n.endswith("." + target) for n in names):
            raise InputError(reader.model_dir, f"{where} target module {target!r} matches no module of this base",
                             "use module names of this architecture, e.g. q_proj, v_proj")


SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")


def check_same_architecture(old: WeightReader, new: WeightReader, modules: list[str]) -> None:
    """Both bases must agree on architecture and on the shapes of adapted modules."""
    # GGUF-converted configs may lack "architectures"; model_type is always there.
    old_arch, new_arch = old.config.get("model_type"), new.config.get("model_type")
    if old_arch != new_arch:
        raise InputError(new.model_dir, f"architecture {new_arch} differs from the old base's {old_arch}",
                         "pass two versions of the same model")
    if old.config.get("vocab_size") != new.config.get("vocab_size"):
        raise InputError(new.model_dir, f"vocabulary of {new.config.get('vocab_size')} tokens differs from the old "
                         f"base's {old.config.get('vocab_size')}: the delta and the old adapter would not carry over",
                         "pass two versions of the same model with the same tokenizer")
    for key in SHAPE_KEYS:  # another size of the same family: the new base is not a version of the old one
        if old.config.get(key) != new.config.get(key):
            raise InputError(new.model_dir, f"{key} {new.config.get(key)} differs from the old base's "
                             f"{old.config.get(key)} ({old.model_dir}): one is another model, not an update of the other",
                             "pass the old base and its updated version")
    for module in modules:
        name = f"{module}.weight"
        for reader in (old, new):
            if name not in reader:
                raise InputError(reader.model_dir, f"module {module} is missing",
                                 "pass bases with the adapter's target modules")
        if old.shape(name) != new.shape(name):
            raise InputError(new.model_dir, f"module {module} has shape {new.shape(name)}, old base {old.shape(name)}",
                             "pass two versions of the same model")


