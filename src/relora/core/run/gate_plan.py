"""A run's gate, planned before any compute: its power check, then the old service's scores and the screen.

The power check refuses, in one line and before anything is trained or written, a gate set too small to
certify the asked margin: from the gate size, alpha split over the planned looks and the assumed discordance,
the smallest margin a candidate as good as the old service clears with 80% power (relora.core.math.gate).
"""

from __future__ import annotations

from pathlib import Path

from relora.core.math import gate as tests
from relora.core.model.config import ReadaptConfig
from relora.core.run.old_scores import OldScores
from relora.core.model.loaded import Loaded
from relora.core.method.methods import METHODS
from relora.core.method.readiness import LookPolicy, Readiness, looks_planned
from relora.core.method.measures import GateRecord, TestCheck
from relora.errors import InputError


def plan_gate(cfg: ReadaptConfig, n_gate: int) -> GateRecord | None:
    """The gate's record before any look; an underpowered paired gate is refused unless allowed."""
    gate = cfg.parsed_gate
    if gate is None:
        return None
    g = cfg.gate
    looks = looks_planned(g, cfg.stop_when_ready)
    alpha_look = g.alpha / looks
    paired = gate.absolute is None
    policy = look_policy(cfg)
    asked = g.futility if g.futility is not None else policy.futility  # the config's wins over the method's
    futility = None if asked is None or not paired else min(asked, gate.margin)
    certifiable = tests.certifiable_margin(n=n_gate, alpha_look=alpha_look, discordance=g.discordance,
                                           chunk=g.chunk, futility=futility) if paired else None
    underpowered = paired and (certifiable is None or gate.margin < certifiable - 1e-9)
    if underpowered and not g.allow_underpowered:
        raise InputError(cfg.val, underpowered_message(n_gate, looks, g.alpha, gate.margin, certifiable,
                                                       g.discordance),
                         underpowered_fix(gate.margin, certifiable, alpha_look, g.discordance, g.chunk, futility))
    return GateRecord(
        test=tests.METHOD if paired else tests.ONE_SAMPLE_METHOD, kind="paired" if paired else "absolute",
        alpha=g.alpha, looks_planned=looks, alpha_per_look=alpha_look, margin=gate.margin if paired else None,
        threshold=gate.absolute, chunk=g.chunk, gate_examples=n_gate, old_gate_accuracy=None,
        old_dval_accuracy=None, screen_bar=gate.absolute if gate.absolute is not None else 0.0,
        certifiable_margin=certifiable, assumed_discordance=g.discordance, allow_underpowered=g.allow_underpowered,
        underpowered=underpowered, futility=futility, screen=policy.screen)


def look_policy(cfg: ReadaptConfig) -> LookPolicy:
    """The method's look policy (an unknown method is refused before this by method_for)."""
    method = METHODS.get(cfg.method)
    return method.looks if method is not None else LookPolicy()


def underpowered_message(n: int, looks: int, alpha: float, margin: float, certifiable: float | None,
                         discordance: float) -> str:
    can = f"margins of {certifiable:g} or more" if certifiable is not None else "no margin up to 0.5"
    return (f"a gate set of {n} with {looks} look(s) at alpha = {alpha:g} (discordance {discordance:g} assumed) can "
            f"certify {can} with 80% power, not the asked {margin:g}")


def underpowered_fix(margin: float, certifiable: float | None, alpha_look: float, discordance: float,
                     chunk: int, futility: float | None = None) -> str:
    needed = tests.examples_needed(margin=margin, alpha_look=alpha_look, discordance=discordance, chunk=chunk,
                                   most=4096, futility=futility)
    more = f"a gate set of at least {needed} examples (data.ready_size)" if needed else "a larger gate set"
    wider = f"a margin of at least {certifiable:g}" if certifiable is not None else "a wider margin"
    return f"give {more}, or {wider}, or gate.allow_underpowered=true"


def readiness_for(cfg: ReadaptConfig, loaded: Loaded, record: GateRecord | None, cache: Path) -> Readiness | None:
    """The run's screen and confirmations: a paired gate scores the old service on D_val first (remembered by
    content hash), which sets the screen's bar, and on the gate set as the looks reach it (or all at once with
    `gate.old_scoring: upfront`). settle_old_scores() closes the books after the last look."""
    gate = cfg.parsed_gate
    if gate is None or record is None:
        return None
    old = None
    if gate.absolute is None:
        old = OldScores(cfg, loaded, cache)
        old_dval = old.whole("dval")
        if cfg.gate.old_scoring == "upfront":
            old.whole("gate")
        old.close()  # detached until the first look: the init may score the old service on the probe meanwhile
        record.old_dval_accuracy = sum(old_dval) / len(old_dval)
        # the screen plan_gate recorded from the method (one lookup, and the record says what ran)
        policy = LookPolicy(screen=record.screen)
        record.screen_bar = record.old_dval_accuracy - policy.screen_slack(gate.margin, record.certifiable_margin)
        end = record.old_dval_accuracy - policy.end_slack(gate.margin, record.certifiable_margin)
        record.screen_bar_end = end if end != record.screen_bar else None  # None: the bar stays where it starts
    return Readiness(gate=gate, record=record, items=loaded.ready, old=old, pad_id=loaded.pad_id,
                     eval_batch_size=cfg.training.eval_batch_size)


def settle_old_scores(readiness: Readiness | None) -> float:
    """After the last look: the old service's part of the record (the examples it scored, its accuracy on the gate
    examples the looks compared, what they cost), and the CPU seconds to add to the run's measured time so that
    it pays what those scores cost when they were scored, not what remembering them cost now."""
    if readiness is None or not isinstance(readiness.old, OldScores):
        return 0.0
    old, record = readiness.old, readiness.record
    old.close()
    record.old_examples = old.used["gate"] + old.used["dval"]
    record.old_scoring_cpu_s = old.charged_s()
    if old.used["gate"]:  # a reading aid: the paired test needs no threshold
        gate_scores = old.correct(old.used["gate"])  # remembered: no look reads past what was scored
        record.old_gate_accuracy = sum(gate_scores) / len(gate_scores)
        record.threshold = record.old_gate_accuracy - (readiness.gate.margin or 0.0)
    return record.old_scoring_cpu_s - old.spent_s


def test_check(old_correct: list[bool], new_correct: list[bool]) -> TestCheck:
    """The paired difference on the test split, scored after the decision, with its 95% bounds."""
    d = [float(n) - float(o) for n, o in zip(new_correct, old_correct, strict=True)]
    lower, upper = tests.interval(d, alpha=0.05)
    return TestCheck(examples=len(d), old_accuracy=sum(old_correct) / len(d), new_accuracy=sum(new_correct) / len(d),
                     diff=sum(d) / len(d), lower=lower, upper=upper)
