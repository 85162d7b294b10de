"""Where tensors live and in what precision: the one place that decides, and that moves things there.

`device: auto` is CUDA when there is one (then MPS, then the CPU); `dtype: auto` is float32 on
the CPU and bfloat16 on a GPU, for the frozen base weights only. LoRA parameters, the optimizer
state, Pi_r and the fusion stay float32/float64, so on the CPU every number is as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch

from relora.errors import InputError

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        why = "this torch has no CUDA, or no GPU is visible" if not torch.cuda.is_available() else \
            f"only {torch.cuda.device_count()} GPU(s) are visible"
        raise InputError("--device", f"{spec} was asked for, but {why}",
                         "pass --device auto or cpu, or install a CUDA build of torch")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device", "mps was asked for, but this machine has no MPS", "pass --device auto or cpu")
    return device


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """The frozen base weights' dtype: float32 on the CPU, bfloat16 on a GPU, unless given."""
    if spec == "auto":
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    return DTYPES[spec]


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def compute_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype the base computes in (its embedding's): autocast targets it."""
    return model.get_input_embeddings().weight.dtype


@contextmanager
def autocast_for(model: torch.nn.Module) -> Iterator[None]:
    """Autocast to the base's dtype when it is not float32, so float32 LoRA layers run in it too."""
    dtype = compute_dtype(model)
    device = model_device(model)
    ctx: Any = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    with ctx:
        yield


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak allocated device memory since the last reset (CUDA only; None elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None
