"""Re-adapt one adapter to a new base with any registered method (Algorithm 1).

Data flows one way: inputs -> init (delta projection and search, for the methods
that search) -> the shared training loop -> outputs. The clock for
time-to-readiness starts once inputs are loaded, so it counts delta projection,
search and training, as the paper's tau does.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from relora.core.model.adapter import attach_lora, save_adapter
from relora.core.model.config import ReadaptConfig
from relora.core.model.device import (compute_dtype, model_device, peak_memory_mb, reset_peak_memory, resolve_device,
                                resolve_dtype)
from relora.core.model.loaded import InitContext, Loaded
from relora.core.run.inputs import judged_on, load_inputs
from relora.core.method.methods import Method, method_for
from relora.core.model.models import shared_model
from relora.core.run.outputs import EventLog, RunDir
from relora.core.method.record import EVENTS_FILE, InitInfo, Metrics, RunRecord, read_events
from relora.core.model.scoring import retention_value
from relora.core.run.retention import adapter_loss, cached_loss
from relora.core.method.measures import Retention
from relora.core.model.scoring import evaluate
from relora.core.run.tracking import check_sinks, send
from relora.core.run.gate_plan import plan_gate, readiness_for, settle_old_scores, test_check
from relora.core.run.old_scores import old_service_correct
from relora.core.method.measures import GateRecord, WorkUnits
from relora.core.method.train import Schedule, TrainData, TrainOutcome, Watch, train
from relora.errors import InputError, TrainingDiverged, cannot_write, stopped
from relora.io import cache_root
from relora.provenance import git_revision, package_versions, peak_rss_mb


def schedule_for(cfg: ReadaptConfig, method: Method) -> Schedule:
    t = cfg.training
    steps = t.steps if method.trains else 0
    lam1, lam2 = (t.lambda1, t.lambda2) if method.anchored else (0.0, 0.0)
    e1 = min(t.stage1_steps(), steps)
    return Schedule(steps, e1, t.lr, t.lr_min, lam1, lam2, t.batch_size, t.micro_batch_size, t.eval_every, t.anchor)


@dataclass(frozen=True)
class Plan:
    """A run's config checked once, before anything loads: its method (and that method's inputs), its tracking
    sinks and its device. A fleet job plans once and hands the plan and its loaded inputs to readapt."""
    cfg: ReadaptConfig
    method: Method


def plan_run(cfg: ReadaptConfig) -> Plan:
    method = method_for(cfg)
    if method.init.retention_floor(cfg) is not None and not cfg.update_probe:
        raise InputError("search.min_retention", f"method {method.name} floors its start's update retention "
                         f"(at {method.init.retention_floor(cfg):g}) and needs update_probe to measure it",
                         "pass update_probe (text of the kind the update was made for), or another method, or "
                         "search.min_retention unset")
    check_sinks(cfg.tracking)
    resolve_device(cfg.device)  # a device this machine lacks is refused before anything is written
    return Plan(cfg, method)


def readapt(cfg: ReadaptConfig | Plan, progress: bool = True, loaded: Loaded | None = None) -> RunRecord:
    """Run one method end to end; writes cfg.out atomically and returns its relora.json.

    Example, on a base update from ``old/`` to ``new/`` with an adapter trained on ``old/``::

        from relora import ReadaptConfig, readapt

        cfg = ReadaptConfig(old_base="old/", new_base="new/", adapter="lora/", train="train.jsonl",
                            val="val.jsonl", out="lora-new/", threshold=0.8,
                            training={"steps": 60}, search={"trials": 12})
        record = readapt(cfg)
        print(record.alpha, record.beta, record.metrics.val_accuracy, record.time_to_ready_s)

    ``lora-new/`` then holds a PEFT adapter (load it with ``PeftModel.from_pretrained``),
    ``relora.json`` (this record) and ``events.jsonl`` (the readiness checks).

    cfg may be a Plan (plan_run), checked already. loaded: that plan's inputs, when the caller has loaded them
    (a fleet job reads, checks and tokenizes its files once, and scores the old service and the fallback on the
    same items).
    """
    t_load = time.perf_counter()
    plan = cfg if isinstance(cfg, Plan) else plan_run(cfg)
    cfg, method = plan.cfg, plan.method
    cache = cache_root(cfg.cache_dir)
    inputs = [p for p in (cfg.new_base, cfg.old_base, cfg.adapter, cfg.train, cfg.val, cfg.test, cfg.update_probe)
              if p and Path(p).exists()]  # a hub id is not a path here
    run = RunDir(cfg.out, cfg.force, inputs, cfg.model_dump(exclude={"force"}))
    loaded = loaded if loaded is not None else load_inputs(cfg, method, cache)
    gate = plan_gate(cfg, len(loaded.ready))  # the power check: an underpowered gate is refused before any work
    try:
        run.open(loaded.hashes)
        record = _on_shared_base(plan, loaded, run, RunSpec(cache=cache, gate=gate, t_load=t_load, progress=progress))
        if cfg.tracking:
            record.tracking = send(cfg.tracking, record, read_events(run.work), run.work, Path(cfg.out).name)
        record.save(run.work)  # the one write of relora.json: retention and tracking are in it already
        run.commit()
    except Exception as exc:
        cause = cannot_write(exc)
        if cause is None:
            raise
        run.discard()  # a full disk leaves nothing half-written behind
        raise stopped(cfg.out, cause) from exc
    finally:
        run.release()
    return record


def _on_shared_base(plan: Plan, loaded: Loaded, run: RunDir, spec: RunSpec) -> RunRecord:
    cfg, method, cache = plan.cfg, plan.method, spec.cache
    device = resolve_device(cfg.device)
    reset_peak_memory(device)
    # one load per process, reused by every adapter on this base
    base = shared_model(loaded.new_dir, device, resolve_dtype(cfg.dtype, device))
    # the search's start is floored on its retention only when asked. The references are scored before this run's
    # LoRA is attached (they attach the old adapter to the same shared base), and their CPU time is charged
    probe_started = time.process_time()
    references = probe_losses(cfg, loaded, cache, device, compute_dtype(base)) \
        if method.init.retention_floor(cfg) is not None else None
    spec = replace(spec, probe_losses=references, probe_cpu_s=time.process_time() - probe_started)
    torch.manual_seed(cfg.seed)
    model = attach_lora(base, loaded.spec, cfg.seed) if method.has_adapter else base
    try:
        record = _run(cfg, method, loaded, model, run, replace(spec, load_s=time.perf_counter() - spec.t_load))
    finally:
        if model is not base:
            model.unload()  # remove the LoRA layers so the shared base is clean for the next adapter
    if loaded.probe is not None:
        # measured after the run, on the adapter as saved, the same way as the old one: PortLLM's is exactly 1
        record.retention = measure_retention(cfg, loaded, run.work if method.has_adapter else None, cache, device,
                                             compute_dtype(base))
    return record


def measure_retention(cfg: ReadaptConfig, loaded: Loaded, run_adapter: Path | None, cache: Path,
                      device: torch.device, dtype: torch.dtype) -> Retention | None:
    """The update probe's LM loss for the old service, PortLLM and the new service; None without an old base
    and an old adapter to compare with."""
    references = probe_losses(cfg, loaded, cache, device, dtype)
    if references is None:
        return None
    loss_old, loss_portllm = references
    blocks, h = loaded.probe, loaded.hashes
    loss_new = adapter_loss(loaded.new_dir, run_adapter, blocks, device, dtype, cfg.seed)
    return Retention(value=retention_value(loss_old, loss_portllm, loss_new), loss_old=loss_old,
                     loss_portllm=loss_portllm, loss_new=loss_new, blocks=len(blocks), probe_hash=h["update_probe"])


def probe_losses(cfg: ReadaptConfig, loaded: Loaded, cache: Path, device: torch.device,
                 dtype: torch.dtype) -> tuple[float, float] | None:
    """The old service's and PortLLM's LM loss on the update probe, remembered by content hash (the same for
    every method on one base pair and adapter); None without a probe, an old base and an old adapter."""
    h = loaded.hashes
    if loaded.probe is None or loaded.old_service_dir is None or "adapter" not in h or not cfg.adapter:
        return None
    blocks, seed = loaded.probe, cfg.seed
    common = f"{h['update_probe']}:{len(blocks)}:{device.type}:{dtype}"
    loss_old = cached_loss(cache, f"{h['old_base']}:{h['adapter']}:{common}",
                           lambda: adapter_loss(loaded.old_service_dir, cfg.adapter, blocks, device, dtype, seed))
    loss_portllm = cached_loss(cache, f"{h['new_base']}:{h['adapter']}:{common}",
                               lambda: adapter_loss(loaded.new_dir, cfg.adapter, blocks, device, dtype, seed))
    return loss_old, loss_portllm


def lineage(cfg: ReadaptConfig, method: Method, loaded: Loaded, version: str | None) -> dict[str, Any]:
    """Which bases and which adapter an output came from, by content hash: a server can check that it
    serves the adapter on the base it was re-adapted for (relora preflight --base does)."""
    h = loaded.hashes
    return {
        "new_base": {"name": cfg.new_base, "sha256": h["new_base"]},
        "old_base": {"name": cfg.old_base, "sha256": h["old_base"]} if "old_base" in h else None,
        "source_adapter": {"name": cfg.adapter, "sha256": h["adapter"]} if "adapter" in h else None,
        "method": method.name, "relora": version,
    }


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """What a run carries besides its plan and inputs: the cache, the planned gate, when it began (and so what
    loading cost), and whether it draws progress bars."""
    cache: Path
    gate: GateRecord | None
    t_load: float
    progress: bool
    load_s: float = 0.0
    probe_losses: tuple[float, float] | None = None  # the old service's and PortLLM's probe loss (search.min_retention)
    probe_cpu_s: float = 0.0  # what scoring them cost this run


def _run(cfg: ReadaptConfig, method: Method, loaded: Loaded, model: torch.nn.Module, run: RunDir,
         spec: RunSpec) -> RunRecord:
    cpu_start = time.process_time()
    readiness = readiness_for(cfg, loaded, spec.gate, spec.cache)  # the old service's scores are compute too
    screen_bar = readiness.record.screen_bar if readiness is not None else None
    info = method.initialize(InitContext(cfg, loaded, model, spec.cache, spec.progress, screen_bar,
                                         spec.probe_losses))
    clock = time.perf_counter() - info.search_s  # wall_s counts the search's (recorded) cost
    events = EventLog(run.path(EVENTS_FILE))
    data = TrainData(train=loaded.items["train"], screen=loaded.val, pad_id=loaded.pad_id,
                     eval_batch_size=cfg.training.eval_batch_size)
    try:
        outcome = train(model, data, schedule_for(cfg, method), seed=cfg.seed, clock_start=clock,
                        watch=Watch(readiness=readiness, stop_when_ready=cfg.stop_when_ready,
                                    on_event=lambda e: events.append(e.as_dict()), progress=spec.progress))
    except TrainingDiverged as exc:
        run.discard()
        raise InputError(cfg.train, f"training diverged ({exc})", "lower training.lr or check the data") from exc
    finally:
        # the old service's scores are charged as scored, whether this run scored them or found them remembered:
        # every method that compared the same examples pays alike
        old_charge_s = settle_old_scores(readiness)
    if readiness is not None:
        looks = readiness.record.looks
        final_look = bool(looks) and looks[-1].step == outcome.steps_done
        readiness.record.verdict = ("published" if outcome.ready_step is not None and final_look
                                    else "not certified" if looks else "no look")
    total_s = time.perf_counter() - clock  # search (as charged) + training
    # this process's CPU seconds in the search, the training and the gate (all threads)
    cpu_s = time.process_time() - cpu_start + old_charge_s + spec.probe_cpu_s
    final = outcome.events[-1]
    metrics = Metrics(val_accuracy=final.val_accuracy, val_loss=final.val_loss,
                      val_accuracy_norm=outcome.final_accuracy_norm)
    checked = None
    if "test" in loaded.items:  # scored only now, after the decision, and never by a search, screen or gate
        test = evaluate(model, loaded.items["test"], loaded.pad_id, cfg.training.eval_batch_size)
        metrics.test_accuracy, metrics.test_loss, metrics.test_accuracy_norm = test.accuracy, test.loss, test.accuracy_norm
        if readiness is not None and readiness.old is not None:
            checked = test_check(old_service_correct(cfg, loaded, spec.cache, "test"), test.correct)
    packages = package_versions()
    warnings = save_adapter(model, run.work, cfg.new_base, lineage(cfg, method, loaded, packages.get("relora")),
                            cfg.portable) if method.has_adapter else []
    for warning in warnings:
        print(f"relora: warning: {cfg.out}: {warning}", file=sys.stderr)  # stderr: see load_inputs
    record = RunRecord(
        **dict(info), method=method.name, metrics=metrics, time_to_ready_s=outcome.ready_wall_s, steps_to_ready=outcome.ready_step,
        threshold=readiness.record.threshold if readiness is not None else None, judged_on=judged_on(cfg), steps=outcome.steps_done, cpu_s=cpu_s,
        train_s=outcome.train_s, total_s=total_s, load_s=spec.load_s,
        gate=readiness.record if readiness is not None else None, test_check=checked,
        labels=loaded.labels, peak_rss_mb=peak_rss_mb(),  # this process's high-water mark
        n_examples={k: len(v) for k, v in loaded.items.items()} | {"val_search": len(loaded.val),
                                                                     "val_ready": len(loaded.ready),
                                                                     "val_in_train": loaded.val_in_train},
        val_correct=outcome.final_correct, config=cfg.model_dump(mode="json"), seed=cfg.seed, hashes=loaded.hashes,
        git_revision=git_revision(), packages=packages, device=str(model_device(model)),
        work=work_units(info, outcome, readiness.record if readiness is not None else None),
        dtype=str(compute_dtype(model)).removeprefix("torch."), peak_device_memory_mb=peak_memory_mb(model_device(model)),
        serving_warnings=warnings,
    )
    return record  # saved once, by readapt, after retention and tracking


def work_units(info: InitInfo, outcome: TrainOutcome, gate: GateRecord | None) -> WorkUnits:
    """The run's compute counted, part for part as cpu_s charges it: the search's probes and gradient steps, the
    training loop's screens and batches, and the gate's looks with the old service's scores."""
    search_forward = (info.search_examples_scored or 0) - info.search_train_examples
    return WorkUnits(examples_scored=search_forward + outcome.screened + (gate.examples_scored if gate else 0),
                     train_examples=info.search_train_examples + outcome.train_examples,
                     train_tokens=info.search_train_tokens + outcome.train_tokens)
