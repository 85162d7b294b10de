"""Where a base model comes from: a model directory, a .gguf file, or a hub id.

A GGUF file is de-quantized once into a safetensors directory in the cache,
so every later step (delta streaming, loading) reads one format.
"""

from __future__ import annotations

from pathlib import Path

import torch

from relora.errors import InputError
from relora.core.model.weights import weight_files
from relora.io import atomic_dir, content_hash


def resolve_base(spec: str, cache_dir: Path) -> Path:
    """A local safetensors model directory for a dir, a .gguf file or a hub id."""
    path = Path(spec)
    if path.is_file() and path.suffix == ".gguf":
        return _gguf_to_safetensors(path, cache_dir)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(path, "not a model directory (needs config.json and *.safetensors)",
                             "pass a Hugging Face model directory or a .gguf file")
        weight_files(path)  # exactly what transformers would load, or one line naming the ambiguity
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
    try:
        with atomic_dir(target, replace=True) as tmp:
            kwargs = {"gguf_file": gguf.name}
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kwargs)
            _save_dequantized(model, tmp)
            AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs).save_pretrained(tmp)
    except InputError:
        raise
    except Exception as exc:
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


