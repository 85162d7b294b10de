"""Base models: resolve a path (HF dir, .gguf, or hub id), hash it, stream its weights.

A GGUF file is de-quantized once into a safetensors directory in the cache,
so every later step (delta streaming, loading) reads one format.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import safe_open

from relora.errors import InputError

HASH_CHUNK = 1 << 22


def cache_root(explicit: str | None = None) -> Path:
    root = explicit or os.environ.get("RELORA_CACHE") or Path.home() / ".cache" / "relora"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(paths: list[Path], cache_dir: Path) -> str:
    """sha256 over the files' hashes; per-file hashes are memoised by (path, size, mtime)."""
    memo_path = cache_dir / "file-hashes.json"
    memo: dict[str, str] = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
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
        atomic_write_text(memo_path, json.dumps(memo, indent=0))
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def model_files(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob("*.safetensors")) + [model_dir / "config.json"]


def resolve_base(spec: str, cache_dir: Path) -> Path:
    """A local safetensors model directory for a dir, a .gguf file or a hub id."""
    path = Path(spec)
    if path.is_file() and path.suffix == ".gguf":
        return _gguf_to_safetensors(path, cache_dir)
    if path.is_dir():
        if not (path / "config.json").is_file() or not list(path.glob("*.safetensors")):
            raise InputError(path, "not a model directory (needs config.json and *.safetensors)",
                             "pass a Hugging Face model directory or a .gguf file")
        return path
    if path.exists():
        raise InputError(path, "unsupported model file", "pass a model directory or a .gguf file")
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return _from_hub(spec)
    raise InputError(path, "model not found", "check the path (a model directory or a .gguf file)")


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as exc:  # offline, unknown repo, auth: all mean "no such local model"
        raise InputError(repo_id, f"could not fetch from the hub ({exc.__class__.__name__})",
                         "pass a local model directory or .gguf file") from exc


def _gguf_to_safetensors(gguf: Path, cache_dir: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    key = content_hash([gguf], cache_dir)[:20]
    target = cache_dir / "gguf" / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        kwargs = {"gguf_file": gguf.name}
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
        _save_dequantized(model, tmp)
        AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs).save_pretrained(tmp)
        os.replace(tmp, target)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, InputError):
            raise
        raise InputError(gguf, f"could not read GGUF ({exc})", "pass an unbroken .gguf of a supported architecture") from exc
    return target


def _save_dequantized(model: torch.nn.Module, out: Path) -> None:
    """save_pretrained refuses GGUF-loaded models, though their weights are plain fp32 by now."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied: stored once, as transformers does
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    config = model.config
    config.architectures = [type(model).__name__]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(out)


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


def load_model(model_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    return model


_SHARED: OrderedDict[str, torch.nn.Module] = OrderedDict()


def shared_model(model_dir: Path, keep: int = 2) -> torch.nn.Module:
    """A process-wide cache of loaded bases (LRU of `keep`), so a worker loads each base once.
    Callers must leave the model as they found it (readapt unloads its LoRA layers)."""
    key = str(model_dir.resolve())
    if key in _SHARED:
        _SHARED.move_to_end(key)
        return _SHARED[key]
    _SHARED[key] = load_model(model_dir)
    while len(_SHARED) > keep:
        _SHARED.popitem(last=False)
    return _SHARED[key]


def load_tokenizer(model_dir: Path):  # noqa: ANN201 - transformers' tokenizer types vary
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if tok.pad_token_id is None:
        tok.pad_token_id = tok.eos_token_id if tok.eos_token_id is not None else 0
    return tok
