"""Re-adapt one adapter to a new base with any registered method (Algorithm 1).

Data flows one way: inputs -> delta projection -> search -> training loop ->
outputs. The clock for time-to-readiness starts once inputs are loaded, so it
counts delta projection, search and training, as the paper's tau does.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from relora.core.adapter import LoraAdapter, attach_lora, check_fits, read_adapter, save_adapter, set_factors
from relora.core.config import ReadaptConfig
from relora.core.data import ScoringItem, load_task, sample
from relora.core.delta import DeltaProjection, cache_key, project_base_delta
from relora.errors import InputError, TrainingDiverged
from relora.core.methods import METHODS, Method
from relora.core.models import load_tokenizer, shared_model
from relora.core.resolve import resolve_base
from relora.core.weights import WeightReader, check_same_architecture, model_files
from relora.io import cache_root, content_hash
from relora.core.ops import LowRank, fuse_factors
from relora.core.outputs import EventLog, RunDir
from relora.provenance import git_revision, package_versions, peak_rss_mb
from relora.core.scoring import evaluate
from relora.core.search import run_search
from relora.core.train import Schedule, train


@dataclass
class Loaded:
    new_dir: Path
    old_dir: Path | None  # only for methods that project the base delta
    pad_id: int
    items: dict[str, list[ScoringItem]]
    val: list[ScoringItem]
    labels: list[str]
    old_adapter: LoraAdapter | None
    spec: LoraAdapter  # the output adapter's shape (no factors)
    hashes: dict[str, str]


def output_spec(cfg: ReadaptConfig, old: LoraAdapter | None) -> LoraAdapter:
    """Output rank/alpha: explicit config, else the old adapter's, else r=16, alpha=2r."""
    t = cfg.training
    r = t.rank or (old.r if old else 16)
    alpha = t.lora_alpha or (old.lora_alpha if old and r == old.r else 2.0 * r)
    return LoraAdapter(
        path=None, r=r, lora_alpha=alpha, use_rslora=old.use_rslora if old else False,
        target_modules=old.target_modules if old else list(t.target_modules),
    )


def load_inputs(cfg: ReadaptConfig, method: Method, cache: Path) -> Loaded:
    new_dir = resolve_base(cfg.new_base, cache)
    tok = load_tokenizer(new_dir)
    items, labels = load_task(cfg.train, cfg.val, cfg.test, tok, cfg.data.template, cfg.data.labels,
                              cfg.data.max_length)
    old = read_adapter(cfg.adapter) if cfg.adapter and method.init != "none" else None
    spec = output_spec(cfg, old)
    new_reader = WeightReader(new_dir)
    if old is not None:
        check_fits(old, new_reader, spec.r)
    hashes = {"new_base": content_hash(model_files(new_dir), cache)}
    old_dir = None
    if method.needs_old_base:
        assert old is not None and cfg.old_base is not None
        old_dir = resolve_base(cfg.old_base, cache)
        check_same_architecture(WeightReader(old_dir), new_reader, old.modules)
        hashes["old_base"] = content_hash(model_files(old_dir), cache)
    if old is not None and old.path is not None:
        hashes["adapter"] = content_hash([old.path / "adapter_config.json", old.path / "adapter_model.safetensors"], cache)
    for split in ("train", "val", "test"):
        if getattr(cfg, split):
            hashes[split] = content_hash([Path(getattr(cfg, split))], cache)
    val = sample(items["val"], cfg.data.val_size, cfg.seed)
    return Loaded(new_dir, old_dir, int(tok.pad_token_id), items, val, labels, old, spec, hashes)


def fused_init(
    alpha: float, beta: float, delta: DeltaProjection | None, old: LoraAdapter, spec: LoraAdapter
) -> tuple[dict[str, LowRank], float]:
    """Eq. 7 for every module, as rank-r factors; returns the max dropped energy."""
    factors, worst = {}, 0.0
    for module, old_lr in old.factors.items():
        d_lr = delta.factors[module] if delta else LowRank(old_lr.B[:, :0], old_lr.A[:0])
        factors[module], dropped = fuse_factors(alpha, d_lr, beta, old_lr, old.scaling, spec.r, spec.scaling)
        worst = max(worst, dropped)
    return factors, worst


def project(cfg: ReadaptConfig, loaded: Loaded, cache: Path, progress: bool) -> DeltaProjection:
    assert loaded.old_adapter is not None and loaded.old_dir is not None
    modules = loaded.old_adapter.modules
    key = cache_key(loaded.hashes["old_base"], loaded.hashes["new_base"], modules, loaded.spec.r,
                    cfg.search.svd, cfg.seed)
    return project_base_delta(WeightReader(loaded.old_dir), WeightReader(loaded.new_dir), modules, loaded.spec.r,
                              cfg.search.svd, cfg.seed, cache / "deltas" / f"{key}.safetensors", progress)


def initialize(
    cfg: ReadaptConfig, method: Method, loaded: Loaded, model: torch.nn.Module, cache: Path, progress: bool
) -> dict[str, Any]:
    """Set the adapter's starting factors; returns what the init did (for relora.json)."""
    info: dict[str, Any] = {"alpha": None, "beta": None, "probes": [], "search_s": 0.0}
    old = loaded.old_adapter
    if method.init == "old":
        assert old is not None
        same = old.r == loaded.spec.r and old.scaling == loaded.spec.scaling
        factors = old.factors if same else fused_init(0.0, 1.0, None, old, loaded.spec)[0]
        set_factors(model, factors)
        info.update(alpha=0.0, beta=1.0)
    if method.init not in ("bo", "grid"):
        return info
    assert old is not None
    start = time.perf_counter()
    delta = project(cfg, loaded, cache, progress)

    def objective(a: float, b: float, n: int) -> float:
        set_factors(model, fused_init(a, b, delta, old, loaded.spec)[0])
        # D_val is a seeded random sample, so its first n examples are a random screening subset
        return evaluate(model, loaded.val[:n], loaded.pad_id, cfg.training.eval_batch_size).loss

    project_s = time.perf_counter() - start
    search = run_search(objective, cfg.search, cfg.seed, len(loaded.val), method.init,
                        search_store(cfg, loaded, method, cache), progress)
    best = search.best
    factors, dropped = fused_init(best.alpha, best.beta, delta, old, loaded.spec)
    set_factors(model, factors)
    # Probes may come from the store (resumed or shared with another method): charge
    # their recorded cost, so time-to-readiness is the same as for a fresh search.
    info.update(
        alpha=best.alpha, beta=best.beta, probes=[p.as_dict() for p in search.probes], search_s=project_s + search.seconds,
        search_wall_s=time.perf_counter() - start, search_examples_scored=search.examples_scored,
        search_stopped_early=search.stopped_early, fusion_dropped_energy=dropped, delta_cached=delta.cached,
        delta_dropped_energy_mean=sum(delta.dropped_energy.values()) / len(delta.dropped_energy),
        delta_relative_norm_mean=sum(delta.relative_delta.values()) / len(delta.relative_delta),
    )
    return info


def search_store(cfg: ReadaptConfig, loaded: Loaded, method: Method, cache: Path) -> Path:
    """One probe store per (inputs, search settings): resumable, and shared by the
    methods that search the same thing (relora and relora-no-sreg)."""
    key = json.dumps([loaded.hashes, loaded.spec.r, loaded.spec.lora_alpha, cfg.data.model_dump(),
                      cfg.search.model_dump(), cfg.seed, method.init], sort_keys=True)
    path = cache / "searches" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def schedule_for(cfg: ReadaptConfig, method: Method) -> Schedule:
    t = cfg.training
    steps = t.steps if method.trains else 0
    lam1, lam2 = (t.lambda1, t.lambda2) if method.anchored else (0.0, 0.0)
    e1 = min(t.stage1_steps(), steps)
    return Schedule(steps, e1, t.lr, t.lr_min, lam1, lam2, t.batch_size, t.micro_batch_size, t.eval_every)


def readapt(cfg: ReadaptConfig, progress: bool = True) -> dict[str, Any]:
    """Run one method end to end; writes --out atomically and returns relora.json's content."""
    t_load = time.perf_counter()
    method = METHODS[cfg.method]
    cache = cache_root(cfg.cache_dir)
    inputs = [p for p in (cfg.new_base, cfg.old_base, cfg.adapter, cfg.train, cfg.val, cfg.test) if p]
    run = RunDir(Path(cfg.out), cfg.force, inputs, cfg.model_dump(exclude={"force"}))
    loaded = load_inputs(cfg, method, cache)
    run.open()
    base = shared_model(loaded.new_dir)  # one load per process, reused by every adapter on this base
    torch.manual_seed(cfg.seed)
    model = attach_lora(base, loaded.spec, cfg.seed) if method.init != "none" else base
    try:
        record = _run(cfg, method, loaded, model, run, cache, time.perf_counter() - t_load, progress)
    finally:
        if model is not base:
            model.unload()  # remove the LoRA layers so the shared base is clean for the next adapter
    run.commit()
    return record


def _run(
    cfg: ReadaptConfig, method: Method, loaded: Loaded, model: torch.nn.Module, run: RunDir, cache: Path,
    load_s: float, progress: bool,
) -> dict[str, Any]:
    info = initialize(cfg, method, loaded, model, cache, progress)
    clock = time.perf_counter() - info["search_s"]  # wall_s counts the search's (recorded) cost
    events = EventLog(run.path("events.jsonl"))
    try:
        outcome = train(model, loaded.items["train"], loaded.val, loaded.pad_id, schedule_for(cfg, method),
                        cfg.seed, clock, cfg.threshold, cfg.stop_when_ready, lambda e: events.append(e.as_dict()),
                        cfg.training.eval_batch_size, progress)
    except TrainingDiverged as exc:
        run.discard()
        raise InputError(cfg.train, f"training diverged ({exc})", "lower training.lr or check the data") from exc
    total_s = time.perf_counter() - clock  # search (as charged) + training
    final = outcome.events[-1]
    metrics: dict[str, Any] = {"val_accuracy": final.val_accuracy, "val_loss": final.val_loss}
    if "test" in loaded.items:
        test = evaluate(model, loaded.items["test"], loaded.pad_id, cfg.training.eval_batch_size)
        metrics.update(test_accuracy=test.accuracy, test_loss=test.loss)
    if method.init != "none":
        save_adapter(model, run.work, cfg.new_base)
    record = {
        "method": method.name, **info, "metrics": metrics,
        "time_to_ready_s": outcome.ready_wall_s, "steps_to_ready": outcome.ready_step,
        "threshold": cfg.threshold, "steps": outcome.steps_done, "train_s": outcome.train_s,
        "total_s": total_s, "load_s": load_s, "labels": loaded.labels,
        "peak_rss_mb": peak_rss_mb(),  # this process's high-water mark
        "n_examples": {k: len(v) for k, v in loaded.items.items()} | {"val_search": len(loaded.val)},
        "val_correct": "".join("1" if c else "0" for c in outcome.final_correct),  # per D_val example, in order
        "config": cfg.model_dump(), "seed": cfg.seed, "hashes": loaded.hashes,
        "git_revision": git_revision(), "packages": package_versions(),
    }
    run.write_json("relora.json", record)
    return record
