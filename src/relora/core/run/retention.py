"""Update retention: does a re-adapted service still have what the base update was made for?

The LM loss on held-out text of the update's kind (``update_probe``) is measured for the old
service (old base + old adapter), PortLLM (new base + old adapter) and the new service (new base +
the re-adapted adapter). retention = (L_old - L_new) / (L_old - L_PortLLM): 1 keeps the update as
fully as PortLLM does, 0 reverts it, below 0 is worse than before the update. Without a probe, or
when the update did not move the probe's loss, retention is None, never a made-up number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from relora.core.model.adapter import attach_lora, read_adapter
from relora.core.model.models import shared_model
from relora.core.model.scoring import lm_loss, retention_value
from relora.core.method.measures import Retention
from relora.errors import InputError
from relora.io import atomic_write, check_regular_file

BLOCK = 64  # tokens per scored block


def probe_text(path: str | Path, max_chars: int | None = None) -> str:
    """Plain text, or JSONL with a "text" field per line; refused in one line when empty or unreadable. With
    max_chars, only about that much is read: a 50 MB probe scored on 1,024 tokens is not read whole."""
    p = check_regular_file(path, "update_probe", "pass a text or JSONL file of the kind of text the update was for")
    try:
        with p.open(encoding="utf-8") as fh:
            raw = fh.read() if max_chars is None else _read_about(fh, max_chars, jsonl=p.suffix == ".jsonl")
    except UnicodeDecodeError as exc:
        raise InputError(p, f"update_probe is not UTF-8 (byte {exc.start})", "re-encode the file as UTF-8") from exc
    if p.suffix == ".jsonl":
        try:
            raw = "\n\n".join(json.loads(line)["text"] for line in raw.splitlines() if line.strip())
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(p, "update_probe's JSONL lines need a \"text\" field", "fix the file") from exc
    return raw


def _read_about(fh: Any, max_chars: int, *, jsonl: bool) -> str:
    """At least max_chars characters of text (whole lines for JSONL, whose last line must stay parseable)."""
    if not jsonl:
        return fh.read(max_chars)
    lines, total = [], 0
    for line in fh:
        lines.append(line)
        total += len(line)
        if total >= max_chars:
            break
    return "".join(lines)


def probe_blocks(path: str | Path, tok: Any, max_blocks: int) -> torch.Tensor:
    """The probe as (n, BLOCK) token ids, at most max_blocks of them."""
    # a token is rarely over 16 characters, so this much text holds the blocks (and a short probe is read whole)
    ids = tok(probe_text(path, max_chars=max_blocks * BLOCK * 16), add_special_tokens=False)["input_ids"]
    n = min(len(ids) // BLOCK, max_blocks)
    if n == 0:
        raise InputError(path, f"update_probe has {len(ids)} tokens, fewer than one {BLOCK}-token block",
                         "pass more text of the update's kind")
    return torch.tensor(ids[: n * BLOCK]).view(n, BLOCK)


def adapter_loss(base_dir: Path, adapter: str | Path | None, blocks: torch.Tensor, device: torch.device,
                 dtype: torch.dtype, seed: int) -> float:
    """LM loss of a base with an adapter as it is on disk (or the base alone); the shared base stays clean."""
    base = shared_model(base_dir, device, dtype)
    if adapter is None:
        return lm_loss(base, blocks)
    model: Any = attach_lora(base, read_adapter(adapter), seed)
    try:
        return lm_loss(model, blocks)
    finally:
        model.unload()


def cached_loss(cache: Path, key: str, compute: Any) -> float:
    """The old service's and PortLLM's losses are the same for every method and run on one base pair and
    adapter: remembered by content hashes, so a fleet or a bench measures each once."""
    memo = cache / "retention-losses.json"
    try:
        known = json.loads(memo.read_text()) if memo.is_file() else {}
    except (OSError, json.JSONDecodeError):
        known = {}  # a damaged memo only costs a re-measurement
    if key not in known:
        known[key] = compute()
        atomic_write(memo, json.dumps(known, indent=1))
    return float(known[key])
