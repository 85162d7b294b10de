"""A run's gate, planned before any compute: its power check, then the old service's scores and the screen.

The power check refuses, in one line and before anything is trained or written, a gate set too small to
certify the asked margin: from the gate size, alpha split over the planned looks and the assumed discordance,
the smallest margin a candidate as good as the old service clears with 80% power (relora.core.math.gate).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from relora.core.math import gate as tests
from relora.core.model.config import ReadaptConfig
from relora.core.run.inputs import score_items
from relora.core.model.loaded import Loaded
from relora.core.method.readiness import Readiness, looks_planned
from relora.core.method.measures import GateRecord, TestCheck
from relora.core.model.resolve import resolve_base
from relora.errors import InputError
from relora.io import atomic_write, read_memo


def plan_gate(cfg: ReadaptConfig, n_gate: int) -> GateRecord | None:
    """The gate's record before any look; an underpowered paired gate is refused unless allowed."""
    gate = cfg.parsed_gate
    if gate is None:
        return None
    g = cfg.gate
    looks = looks_planned(g, cfg.stop_when_ready)
    alpha_look = g.alpha / looks
    paired = gate.absolute is None
    certifiable = tests.certifiable_margin(n=n_gate, alpha_look=alpha_look, discordance=g.discordance,
                                           chunk=g.chunk) if paired else None
    underpowered = paired and (certifiable is None or gate.margin < certifiable - 1e-9)
    if underpowered and not g.allow_underpowered:
        raise InputError(cfg.val, underpowered_message(n_gate, looks, g.alpha, gate.margin, certifiable,
                                                       g.discordance),
                         underpowered_fix(gate.margin, certifiable, alpha_look, g.discordance, g.chunk))
    return GateRecord(
        test=tests.METHOD if paired else tests.ONE_SAMPLE_METHOD, kind="paired" if paired else "absolute",
        alpha=g.alpha, looks_planned=looks, alpha_per_look=alpha_look, margin=gate.margin if paired else None,
        threshold=gate.absolute, chunk=g.chunk, gate_examples=n_gate, old_gate_accuracy=None,
        old_dval_accuracy=None, screen_bar=gate.absolute if gate.absolute is not None else 0.0,
        certifiable_margin=certifiable, assumed_discordance=g.discordance, allow_underpowered=g.allow_underpowered,
        underpowered=underpowered)


def underpowered_message(n: int, looks: int, alpha: float, margin: float, certifiable: float | None,
                         discordance: float) -> str:
    can = f"margins of {certifiable:g} or more" if certifiable is not None else "no margin up to 0.5"
    return (f"a gate set of {n} with {looks} look(s) at alpha = {alpha:g} (discordance {discordance:g} assumed) can "
            f"certify {can} with 80% power, not the asked {margin:g}")


def underpowered_fix(margin: float, certifiable: float | None, alpha_look: float, discordance: float,
                     chunk: int) -> str:
    needed = tests.examples_needed(margin=margin, alpha_look=alpha_look, discordance=discordance, chunk=chunk,
                                   most=4096)
    more = f"a gate set of at least {needed} examples (data.ready_size)" if needed else "a larger gate set"
    wider = f"a margin of at least {certifiable:g}" if certifiable is not None else "a wider margin"
    return f"give {more}, or {wider}, or gate.allow_underpowered=true"


def readiness_for(cfg: ReadaptConfig, loaded: Loaded, record: GateRecord | None, cache: Path) -> Readiness | None:
    """The run's screen and confirmations: a paired gate first scores the old service on the gate set and D_val
    (remembered by content hash), which sets the screen's bar."""
    gate = cfg.parsed_gate
    if gate is None or record is None:
        return None
    old_correct = None
    if gate.absolute is None:
        (old_gate, gate_s), (old_dval, dval_s) = (old_service_scored(cfg, loaded, cache, split)
                                                  for split in ("gate", "dval"))
        old_correct = old_gate
        record.old_scoring_cpu_s = gate_s + dval_s
        record.old_gate_accuracy = sum(old_gate) / len(old_gate)
        record.old_dval_accuracy = sum(old_dval) / len(old_dval)
        record.old_examples = len(old_gate) + len(old_dval)
        record.screen_bar = record.old_dval_accuracy - gate.margin
        record.threshold = record.old_gate_accuracy - gate.margin
    return Readiness(gate=gate, record=record, items=loaded.ready, old_correct=old_correct, pad_id=loaded.pad_id,
                     eval_batch_size=cfg.training.eval_batch_size)


def old_service_correct(cfg: ReadaptConfig, loaded: Loaded, cache: Path, split: str) -> list[bool]:
    return old_service_scored(cfg, loaded, cache, split)[0]


def old_service_scored(cfg: ReadaptConfig, loaded: Loaded, cache: Path, split: str) -> tuple[list[bool], float]:
    """The old service (old base + old adapter) per example on one split: "gate" (the gate set), "dval" or
    "test", and the CPU seconds that scoring cost. Remembered by content hash, so it is computed once per
    service; its cost is remembered too, so every method that needs it is charged it alike."""
    if not cfg.old_base or not cfg.adapter:
        raise InputError("threshold", "a gate relative to the old service needs old_base and adapter",
                         "pass --old-base and --adapter, or an absolute threshold")
    items = {"gate": loaded.ready, "dval": loaded.val, "test": loaded.items.get("test", [])}[split]
    h = loaded.hashes
    key = json.dumps([split, h.get("old_base"), h.get("adapter"), h.get("val"), h.get("test"), cfg.data.model_dump(),
                      cfg.seed if split == "dval" else None, cfg.device, cfg.dtype, len(items)], sort_keys=True)
    memo = Path(cfg.gate.score_cache or cache) / "old-service" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    known = read_memo(memo, dict)
    if isinstance(known.get("correct"), list) and len(known["correct"]) == len(items):
        return [bool(c) for c in known["correct"]], float(known.get("cpu_s", 0.0))
    old_dir = loaded.old_service_dir or resolve_base(cfg.old_base, cache)
    started = time.process_time()
    correct = score_items(old_dir, cfg.adapter, items, loaded.pad_id, cfg).correct
    cpu_s = time.process_time() - started
    memo.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(memo, json.dumps({"correct": correct, "cpu_s": cpu_s}))
    return correct, cpu_s


def test_check(old_correct: list[bool], new_correct: list[bool]) -> TestCheck:
    """The paired difference on the test split, scored after the decision, with its 95% bounds."""
    d = [float(n) - float(o) for n, o in zip(new_correct, old_correct, strict=True)]
    lower, upper = tests.interval(d, alpha=0.05)
    return TestCheck(examples=len(d), old_accuracy=sum(old_correct) / len(d), new_accuracy=sum(new_correct) / len(d),
                     diff=sum(d) / len(d), lower=lower, upper=upper)
