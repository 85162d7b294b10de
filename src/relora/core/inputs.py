"""A run's inputs, loaded and checked once: the bases, the old adapter, the task and D_val.

D_val is drawn here and only here (a seeded sample of the validation file), so
readapt, the fleet's service measurements and perf all score the same examples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relora.core.adapter import LoraAdapter, attach_lora, check_fits, read_adapter
from relora.core.config import ReadaptConfig
from relora.core.data import ScoringItem, Tokenizer, load_task, read_jsonl, sample, tokenize
from relora.core.device import resolve_device, resolve_dtype
from relora.core.methods import Method
from relora.core.models import load_tokenizer, shared_model
from relora.core.resolve import resolve_base
from relora.core.scoring import EvalResult, evaluate
from relora.core.weights import WeightReader, check_finite, check_same_architecture, check_targets_exist, model_files
from relora.errors import InputError
from relora.io import atomic_write, content_hash


@dataclass
class Loaded:
    new_dir: Path
    old_dir: Path | None  # only for methods that project the base delta
    pad_id: int
    items: dict[str, list[ScoringItem]]
    val: list[ScoringItem]  # D_val: the search objective
    ready: list[ScoringItem]  # the readiness checks: D_val itself unless data.ready_size
    labels: list[str]
    old_adapter: LoraAdapter | None
    spec: LoraAdapter  # the output adapter's shape (no factors)
    hashes: dict[str, str]


def _d_val_positions(n: int, cfg: ReadaptConfig) -> list[int]:
    return sample(list(range(n)), cfg.data.val_size, cfg.seed)


def d_val(val_items: list[ScoringItem], cfg: ReadaptConfig) -> list[ScoringItem]:
    """The seeded D_val sample of the validation split: the search's objective."""
    return [val_items[i] for i in _d_val_positions(len(val_items), cfg)]


def readiness_set(val_items: list[ScoringItem], cfg: ReadaptConfig, path: str | Path | None = None) -> list[ScoringItem]:
    """The examples readiness is judged on: D_val, or with data.ready_size a seeded sample the search
    never scored (disjoint from D_val), so a searched init is not judged on what it was tuned on."""
    if cfg.data.ready_size is None:
        return d_val(val_items, cfg)
    searched = set(_d_val_positions(len(val_items), cfg))
    rest = [i for i in range(len(val_items)) if i not in searched]
    if len(rest) < cfg.data.ready_size:
        raise InputError(path, f"has {len(val_items)} examples; D_val ({cfg.data.val_size}) and a disjoint readiness "
                         f"set ({cfg.data.ready_size}) need {cfg.data.val_size + cfg.data.ready_size}",
                         "lower data.val_size or data.ready_size, or add validation examples")
    return [val_items[i] for i in sample(rest, cfg.data.ready_size, cfg.seed + 1)]


def output_spec(cfg: ReadaptConfig, old: LoraAdapter | None) -> LoraAdapter:
    """Output rank/alpha: explicit config, else the old adapter's, else r=16, alpha=2r."""
    t = cfg.training
    r = t.rank or (old.r if old else 16)
    alpha = t.lora_alpha or (old.lora_alpha if old and r == old.r else 2.0 * r)
    return LoraAdapter(
        path=None, r=r, lora_alpha=alpha, use_rslora=old.use_rslora if old else False,
        target_modules=old.target_modules if old else list(t.target_modules),
    )


def input_hashes(cfg: ReadaptConfig, new_dir: Path, old_dir: Path | None, old: LoraAdapter | None,
                 cache: Path) -> dict[str, str]:
    hashes = {"new_base": content_hash(model_files(new_dir), cache)}
    if old_dir is not None:
        hashes["old_base"] = content_hash(model_files(old_dir), cache)
    if old is not None and old.path is not None:
        hashes["adapter"] = content_hash([old.path / "adapter_config.json", old.path / "adapter_model.safetensors"], cache)
    for split in ("train", "val", "test"):
        if getattr(cfg, split):
            hashes[split] = content_hash([Path(getattr(cfg, split))], cache)
    return hashes


def load_inputs(cfg: ReadaptConfig, method: Method, cache: Path) -> Loaded:
    """Every input read and checked before any work starts; the first problem is one InputError."""
    new_dir = resolve_base(cfg.new_base, cache)
    tok = load_tokenizer(new_dir)
    items, labels = load_task(cfg.train, cfg.val, cfg.test, tok, cfg.data.template, cfg.data.labels,
                              cfg.data.max_length)
    # Read whenever given: even a fresh LoRA takes the old adapter's shape (rank, alpha, targets)
    old = read_adapter(cfg.adapter) if cfg.adapter and method.has_adapter else None
    spec = output_spec(cfg, old)
    new_reader = WeightReader(new_dir)
    if old is not None:
        check_fits(old, new_reader, spec.r)
    elif method.has_adapter:
        check_targets_exist(new_reader, spec.target_modules, "training.target_modules:")
    # The old base, when given, must be the same model with the same tokenizer: the delta, PortLLM and
    # the old service's measurements all assume it
    old_dir = resolve_base(cfg.old_base, cache) if cfg.old_base and method.has_adapter else None
    if old_dir is not None:
        check_same_architecture(WeightReader(old_dir), new_reader, old.modules if old else [])
        check_same_tokenizer(old_dir, tok, new_dir)
    hashes = input_hashes(cfg, new_dir, old_dir, old, cache)
    check_finite_once(new_reader, hashes["new_base"], cache)
    if old_dir is not None:
        check_finite_once(WeightReader(old_dir), hashes["old_base"], cache)
    return Loaded(new_dir, old_dir if method.needs_old_base else None, int(tok.pad_token_id), items,
                  d_val(items["val"], cfg), readiness_set(items["val"], cfg, cfg.val), labels, old, spec, hashes)


def check_same_tokenizer(old_dir: Path, new_tok: Tokenizer, new_dir: Path) -> None:
    if load_tokenizer(old_dir).get_vocab() != new_tok.get_vocab():  # type: ignore[attr-defined]
        raise InputError(new_dir, "its tokenizer's vocabulary differs from the old base's: the old adapter and "
                         "the delta would score different tokens", "pass two versions of the same model")


def check_finite_once(reader: WeightReader, content: str, cache: Path) -> None:
    """check_finite, remembered by content hash: a fleet checks each base once, not once per adapter."""
    memo = cache / "finite-weights.json"
    known = set(json.loads(memo.read_text())) if memo.is_file() else set()
    if content not in known:
        check_finite(reader)
        atomic_write(memo, json.dumps(sorted(known | {content})))


def tokenized_val(cfg: ReadaptConfig, tok: Tokenizer, labels: list[str]) -> list[ScoringItem]:
    """The readiness set alone (what readapt's val metrics and correctness are on), tokenized with a
    label set that readapt has already validated."""
    items = tokenize(read_jsonl(cfg.val), labels, tok, cfg.data.template, cfg.data.max_length)
    return readiness_set(items, cfg, cfg.val)


def score_adapter(base: str, adapter: str | None, cfg: ReadaptConfig, labels: list[str], cache: Path) -> EvalResult:
    """D_val quality of `base` with an adapter as it is on disk (or the base alone): the old service
    (old base + old adapter), or PortLLM's fallback (new base + old adapter)."""
    model_dir = resolve_base(base, cache)
    tok = load_tokenizer(model_dir)
    val = tokenized_val(cfg, tok, labels)
    device = resolve_device(cfg.device)
    base_model = shared_model(model_dir, device, resolve_dtype(cfg.dtype, device))
    if adapter is None:
        return evaluate(base_model, val, int(tok.pad_token_id), cfg.training.eval_batch_size)
    old = read_adapter(adapter)
    model: Any = attach_lora(base_model, old, cfg.seed)
    try:
        return evaluate(model, val, int(tok.pad_token_id), cfg.training.eval_batch_size)
    finally:
        model.unload()  # the shared base stays clean for the next job
