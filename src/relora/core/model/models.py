"""Loading a base model and its tokenizer, and the process-wide cache of loaded bases."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from relora.errors import InputError


def load_model(model_dir: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A base in eval mode, its weights in `dtype` on `device` (relora.core.model.device chooses both)."""
    from transformers import AutoModelForCausalLM

    # use_safetensors: a pickle (pytorch_model.bin) beside the safetensors is never loaded
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, use_safetensors=True)
    model.to(device)
    model.eval()
    return model


_SHARED: OrderedDict[tuple[str, str, str], torch.nn.Module] = OrderedDict()


def shared_model(model_dir: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 keep: int = 2) -> torch.nn.Module:
    """A process-wide cache of loaded bases (LRU of `keep`), so a worker loads each base once.
    Callers must leave the model as they found it (readapt unloads its LoRA layers)."""
    key = (str(model_dir.resolve()), str(device), str(dtype))
    if key in _SHARED:
        _SHARED.move_to_end(key)
        return _SHARED[key]
    _SHARED[key] = load_model(model_dir, device, dtype)
    while len(_SHARED) > keep:
        _SHARED.popitem(last=False)
    return _SHARED[key]


def load_tokenizer(model_dir: Path):  # noqa: ANN201 - transformers' tokenizer types vary
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError, TypeError) as exc:  # no or broken tokenizer files
        raise InputError(model_dir, f"has no usable tokenizer ({exc.__class__.__name__})",
                         "copy the model's tokenizer files (tokenizer.json, tokenizer_config.json) into it") from exc
    if tok.pad_token_id is None:
        tok.pad_token_id = tok.eos_token_id if tok.eos_token_id is not None else 0
    return tok
