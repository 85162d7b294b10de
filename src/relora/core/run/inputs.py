"""A run's inputs, loaded and checked once: the bases, the old adapter, the task and D_val.

D_val is drawn here and only here (a seeded sample of the validation file), so
readapt, the fleet's service measurements and perf all score the same examples.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from relora.core.model.adapter import EMBEDDING_MODULES, LoraAdapter, attach_lora, check_fits, read_adapter
from relora.core.model.config import ReadaptConfig
from relora.core.model.data import ScoringItem, TaskFormat, Tokenizer, read_jsonl, read_task, tokenize
from relora.core.model.device import resolve_device, resolve_dtype
from relora.core.model.loaded import Loaded
from relora.core.method.methods import Method
from relora.core.model.models import load_tokenizer, shared_model
from relora.core.model.resolve import resolve_base
from relora.core.run.retention import probe_blocks
from relora.core.model.scoring import EvalResult, evaluate
from relora.core.model.weights import WeightReader, check_finite, check_same_architecture, check_targets_exist, model_files
from relora.errors import InputError
from relora.io import atomic_write, check_regular_file, content_hash, read_memo


GATE_MAX = 2048  # the default gate set: half of the validation file, at most this many examples
GATE_SEED = 1  # the gate set is drawn with this seed, not the run's: fixed per service across seeds and re-runs
MIN_SPLIT = 4  # each side of the split needs at least this many examples to mean anything


def gate_size(n: int, cfg: ReadaptConfig) -> int:
    """How many validation examples judge readiness: data.ready_size, else half the file (at most 2048); 0: none
    (readiness is then judged on D_val, the search's own examples)."""
    return cfg.data.ready_size if cfg.data.ready_size is not None else min(n // 2, GATE_MAX)


def split_positions(n: int, cfg: ReadaptConfig, path: str | Path | None = None) -> tuple[list[int], list[int] | None]:
    """(D_val, gate set) positions in a validation file of n examples, both seeded and shuffled. The gate set
    is drawn first, with a fixed seed (so every seed and re-run of a service is judged on the same examples, not
    a fresh draw of them), and D_val from what is left with the run's seed, so no probe, gradient step, screen or
    keep/reject guard ever scores a gate example. A file too small to split is refused, naming the numbers."""
    k = gate_size(n, cfg)
    if k == 0:
        return random.Random(cfg.seed).sample(range(n), min(cfg.data.val_size, n)), None
    if k < MIN_SPLIT or n - k < MIN_SPLIT:
        raise InputError(path, f"has {n} validation examples; a gate set of {k} and a disjoint D_val need at least "
                         f"{MIN_SPLIT} each ({max(k, MIN_SPLIT) + MIN_SPLIT} in all)",
                         "add validation examples, set data.ready_size to fit, or data.ready_size=0 to judge on D_val")
    gate = random.Random(GATE_SEED).sample(range(n), k)
    taken = set(gate)
    rest = [i for i in range(n) if i not in taken]
    return random.Random(cfg.seed).sample(rest, min(cfg.data.val_size, len(rest))), gate


def d_val(val_items: list[ScoringItem], cfg: ReadaptConfig, path: str | Path | None = None) -> list[ScoringItem]:
    """The seeded D_val sample of the validation split: the search's objective (its order is random, so its
    first n examples are a random screening subset)."""
    return [val_items[i] for i in split_positions(len(val_items), cfg, path)[0]]


def readiness_set(val_items: list[ScoringItem], cfg: ReadaptConfig, path: str | Path | None = None) -> list[ScoringItem]:
    """The examples readiness, gates, flips and the old-service and fallback measures are judged on: the gate set,
    disjoint from D_val; with data.ready_size=0, D_val itself (as the paper does)."""
    searched, gate = split_positions(len(val_items), cfg, path)
    return [val_items[i] for i in (searched if gate is None else gate)]


def judged_on(cfg: ReadaptConfig) -> str:
    """What the record says readiness was judged on."""
    return "D_val" if cfg.data.ready_size == 0 else "gate set"


def output_spec(cfg: ReadaptConfig, old: LoraAdapter | None) -> LoraAdapter:
    """Output rank/alpha: explicit config, else the old adapter's, else r=16, alpha=2r."""
    t = cfg.training
    r = t.rank or (old.r if old else 16)
    alpha = t.lora_alpha or (old.lora_alpha if old and r == old.r else 2.0 * r)
    return LoraAdapter(
        path=None, r=r, lora_alpha=alpha, use_rslora=old.use_rslora if old else False,
        target_modules=old.target_modules if old else list(t.target_modules),
        layer_options=dict(old.layer_options) if old else {},
    )


def input_hashes(cfg: ReadaptConfig, new_dir: Path, old_dir: Path | None, old: LoraAdapter | None,
                 cache: Path) -> dict[str, str]:
    hashes = {"new_base": content_hash(model_files(new_dir), cache)}
    if old_dir is not None:
        hashes["old_base"] = content_hash(model_files(old_dir), cache)
    if old is not None and old.path is not None:
        hashes["adapter"] = content_hash([old.path / "adapter_config.json", old.path / "adapter_model.safetensors"], cache)
    for split in ("train", "val", "test", "update_probe"):
        if getattr(cfg, split):
            path = check_regular_file(getattr(cfg, split), split if split == "update_probe" else "data file",
                                      "pass a regular file")
            hashes[split] = content_hash([path], cache)
    return hashes


def load_inputs(cfg: ReadaptConfig, method: Method, cache: Path) -> Loaded:
    """Every input read and checked before any work starts; the first problem is one InputError."""
    new_dir = resolve_base(cfg.new_base, cache)
    tok = load_tokenizer(new_dir)
    task = read_task(cfg.train, cfg.val, cfg.test, tok, TaskFormat(template=cfg.data.template,
                     labels=cfg.data.labels, max_length=cfg.data.max_length))
    items, labels, shared = task.items, task.labels, task.val_in_train
    if shared:
        # stderr, not logging: libraries that configure the root logger would swallow it
        print(f"relora: warning: {cfg.val}: {shared} of its examples also appear in {cfg.train}; readiness on them "
              "is not held out (relora.json records it as n_examples.val_in_train)", file=sys.stderr)
    # Read whenever given: even a fresh LoRA takes the old adapter's shape (rank, alpha, targets)
    old = read_adapter(cfg.adapter) if cfg.adapter and method.has_adapter else None
    spec = output_spec(cfg, old)
    new_reader = WeightReader(new_dir)
    # The old base, when given, must be the same model with the same tokenizer: the delta, PortLLM and
    # the old service's measurements all assume it. Checked before the adapter: a new base of another
    # shape is the new base's fault, not the adapter's
    old_dir = resolve_base(cfg.old_base, cache) if cfg.old_base and method.has_adapter else None
    if old_dir is not None:
        check_same_architecture(WeightReader(old_dir), new_reader, old.modules if old else [])
    if old is not None:
        check_fits(old, new_reader, spec.r)
    elif method.has_adapter:
        embedded = sorted(set(spec.target_modules) & EMBEDDING_MODULES)
        if embedded:
            raise InputError("training.target_modules", f"{', '.join(embedded)} is an embedding, not a linear layer",
                             "target linear layers, e.g. training.target_modules=[q_proj,v_proj]")
        check_targets_exist(new_reader, spec.target_modules, "training.target_modules:")
    if old_dir is not None:
        check_same_tokenizer(old_dir, tok, new_dir)
    hashes = input_hashes(cfg, new_dir, old_dir, old, cache)
    check_finite_once(new_reader, hashes["new_base"], cache)
    if old_dir is not None:
        check_finite_once(WeightReader(old_dir), hashes["old_base"], cache)
    probe = probe_blocks(cfg.update_probe, tok, cfg.data.probe_blocks) if cfg.update_probe else None
    return Loaded(new_dir, old_dir if method.needs_old_base else None, int(tok.pad_token_id), items,
                  d_val(items["val"], cfg, cfg.val), readiness_set(items["val"], cfg, cfg.val), labels, old, spec, hashes,
                  probe, old_dir, shared)


def check_same_tokenizer(old_dir: Path, new_tok: Tokenizer, new_dir: Path) -> None:
    if load_tokenizer(old_dir).get_vocab() != new_tok.get_vocab():  # type: ignore[attr-defined]
        raise InputError(new_dir, "its tokenizer's vocabulary differs from the old base's: the old adapter and "
                         "the delta would score different tokens", "pass two versions of the same model")


def check_finite_once(reader: WeightReader, content: str, cache: Path) -> None:
    """check_finite, remembered by content hash: a fleet checks each base once, not once per adapter."""
    memo = cache / "finite-weights.json"
    known = {h for h in read_memo(memo, list) if isinstance(h, str)}
    if content not in known:
        check_finite(reader)
        atomic_write(memo, json.dumps(sorted(known | {content})))


def tokenized_val(cfg: ReadaptConfig, tok: Tokenizer, labels: list[str]) -> list[ScoringItem]:
    """D_val alone (what readapt's val metrics and correctness are on: the screen's split), tokenized with a
    label set that readapt has already validated."""
    items = tokenize(read_jsonl(cfg.val), labels, tok, cfg.data.template, cfg.data.max_length)
    return d_val(items, cfg, cfg.val)


def tokenized_gate(cfg: ReadaptConfig, tok: Tokenizer, labels: list[str]) -> list[ScoringItem]:
    """The gate set alone (what the gate's looks score, chunk by chunk), tokenized likewise."""
    items = tokenize(read_jsonl(cfg.val), labels, tok, cfg.data.template, cfg.data.max_length)
    return readiness_set(items, cfg, cfg.val)


def score_adapter(base: str, adapter: str | None, cfg: ReadaptConfig, labels: list[str], cache: Path) -> EvalResult:
    """D_val quality of `base` with an adapter as it is on disk (or the base alone), tokenized here."""
    model_dir = resolve_base(base, cache)
    tok = load_tokenizer(model_dir)
    return score_items(model_dir, adapter, tokenized_val(cfg, tok, labels), int(tok.pad_token_id), cfg)


def score_items(model_dir: Path, adapter: str | None, items: list[ScoringItem], pad_id: int,
                cfg: ReadaptConfig) -> EvalResult:
    """Quality of a base with an adapter as it is on disk (or the base alone) on items already tokenized: the
    old service (old base + old adapter), or PortLLM's fallback (new base + old adapter)."""
    service = Service(model_dir, adapter, cfg)
    try:
        return service.evaluate(items, pad_id)
    finally:
        service.close()


class Service:
    """A base with an adapter as it is on disk, held across calls: the old service a gate scores chunk by chunk
    is attached once per run, not once per chunk. close() unloads the adapter so the shared base is clean."""

    def __init__(self, model_dir: Path, adapter: str | None, cfg: ReadaptConfig) -> None:
        self._model_dir, self._adapter, self._cfg = model_dir, adapter, cfg
        self._base: Any = None
        self._model: Any = None

    def evaluate(self, items: list[ScoringItem], pad_id: int) -> EvalResult:
        if self._model is None:
            device = resolve_device(self._cfg.device)
            self._base = shared_model(self._model_dir, device, resolve_dtype(self._cfg.dtype, device))
            self._model = self._base if self._adapter is None else attach_lora(
                self._base, read_adapter(self._adapter), self._cfg.seed)
        return evaluate(self._model, items, pad_id, self._cfg.training.eval_batch_size)

    def close(self) -> None:
        if self._model is not None and self._model is not self._base:
            self._model.unload()  # the shared base stays clean for the next job
        self._model = self._base = None
