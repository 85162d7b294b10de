"""Loading a base model and its tokenizer, and the process-wide cache of loaded bases."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch


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
