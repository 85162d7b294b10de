"""The old service's scores: the bar every gate compares with, scored once per service and remembered.

The old service (old base + old adapter) is scored per example on D_val (the screen's bar), on the gate set
and, after the decision, on the test split. The gate set is scored as the looks need it: a look reads the old
service's scores for the chunk it is about to compare, so a look that settles on 160 examples costs the old
service 160 of them, not the whole set (`gate.old_scoring: upfront` scores it all before the first look). The
verdicts are the same either way: each look compares the same examples in the same order.

Scores are remembered by content hash in `gate.score_cache` (a race shares one across methods), with what each
piece cost when it was scored. A run is charged, in cpu_s, what the scores it used cost when they were scored,
whether it scored them or found them remembered, so every method that reads the same prefix pays alike.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from relora.core.model.config import ReadaptConfig
from relora.core.model.data import ScoringItem
from relora.core.model.loaded import Loaded
from relora.core.model.resolve import resolve_base
from relora.core.run.inputs import Service
from relora.errors import InputError
from relora.io import atomic_write, read_memo

SPLITS = ("gate", "dval", "test")


@dataclass
class ScoreMemo:
    """One split's remembered scores: a prefix of its examples, and the CPU seconds of each piece as it was scored
    ((end, cpu_s) in order). A memo from before pieces (one whole list and its cost) reads as one piece."""

    path: Path
    size: int  # the split's length
    correct: list[bool] = field(default_factory=list)
    pieces: list[tuple[int, float]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path, size: int) -> ScoreMemo:
        known = read_memo(path, dict)
        correct, pieces = known.get("correct"), known.get("pieces")
        if pieces is None and isinstance(correct, list) and "cpu_s" in known:
            pieces = [[len(correct), known["cpu_s"]]]
        try:
            ends = [int(end) for end, _ in pieces or []]
            costs = [float(cpu) for _, cpu in pieces or []]
        except (TypeError, ValueError):
            return cls(path, size)  # damaged: redone at once
        if not isinstance(correct, list) or len(correct) > size or (ends and ends[-1] != len(correct)):
            return cls(path, size)
        return cls(path, size, [bool(c) for c in correct], list(zip(ends, costs)))

    def cost(self, stop: int) -> float:
        """What the first `stop` scores cost when they were scored (pro rata inside a piece)."""
        total, begin = 0.0, 0
        for end, cpu_s in self.pieces:
            if begin >= stop:
                break
            total += cpu_s * (min(end, stop) - begin) / max(end - begin, 1)
            begin = end
        return total

    def extend(self, correct: list[bool], cpu_s: float) -> None:
        self.correct += correct
        self.pieces.append((len(self.correct), cpu_s))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps({"correct": self.correct, "pieces": self.pieces}))


def memo_path(cfg: ReadaptConfig, loaded: Loaded, cache: Path, split: str) -> Path:
    items = split_items(loaded, split)
    h = loaded.hashes
    key = json.dumps([split, h.get("old_base"), h.get("adapter"), h.get("val"), h.get("test"), cfg.data.model_dump(),
                      cfg.seed if split == "dval" else None, cfg.device, cfg.dtype, len(items)], sort_keys=True)
    return Path(cfg.gate.score_cache or cache) / "old-service" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def split_items(loaded: Loaded, split: str) -> list[ScoringItem]:
    return {"gate": loaded.ready, "dval": loaded.val, "test": loaded.items.get("test", [])}[split]


class OldScores:
    """The old service's scores for one run, read a prefix at a time (relora.core.method.readiness.OldService).
    It tracks what the run used (`used`, per split), what it cost when scored (`charged_s`) and what scoring
    cost this run itself (`spent_s`), and holds the old service attached until close()."""

    def __init__(self, cfg: ReadaptConfig, loaded: Loaded, cache: Path) -> None:
        if not cfg.old_base or not cfg.adapter:
            raise InputError("threshold", "a gate relative to the old service needs old_base and adapter",
                             "pass --old-base and --adapter, or an absolute threshold")
        self._cfg, self._loaded, self._cache = cfg, loaded, cache
        self._memos: dict[str, ScoreMemo] = {}  # read when a split is first asked for
        self.used = dict.fromkeys(SPLITS, 0)
        self.spent_s = 0.0
        self._service: Service | None = None

    def correct(self, stop: int) -> list[bool]:
        """The gate set's first `stop` scores, scoring only the ones not remembered yet."""
        return self.prefix("gate", stop)

    def whole(self, split: str) -> list[bool]:
        return self.prefix(split, len(split_items(self._loaded, split)))

    def _memo(self, split: str) -> ScoreMemo:
        if split not in self._memos:
            self._memos[split] = ScoreMemo.read(memo_path(self._cfg, self._loaded, self._cache, split),
                                                len(split_items(self._loaded, split)))
        return self._memos[split]

    def prefix(self, split: str, stop: int) -> list[bool]:
        memo = self._memo(split)
        stop = min(stop, memo.size)
        if stop > len(memo.correct):
            if self._service is None:
                old_dir = self._loaded.old_service_dir or resolve_base(self._cfg.old_base, self._cache)
                self._service = Service(old_dir, self._cfg.adapter, self._cfg)
            started = time.process_time()
            scored = self._service.evaluate(split_items(self._loaded, split)[len(memo.correct) : stop],
                                            self._loaded.pad_id).correct
            cpu_s = time.process_time() - started
            self.spent_s += cpu_s
            memo.extend(scored, cpu_s)
        self.used[split] = max(self.used[split], stop)
        return memo.correct[:stop]

    def charged_s(self) -> float:
        """What the gate set's and D_val's scores this run used cost when they were scored."""
        return sum(self._memos[s].cost(self.used[s]) for s in ("gate", "dval") if s in self._memos)

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None


def old_service_correct(cfg: ReadaptConfig, loaded: Loaded, cache: Path, split: str) -> list[bool]:
    """The old service per example on a whole split ("gate", "dval" or "test"). Remembered by content hash, so it
    is computed once per service."""
    scores = OldScores(cfg, loaded, cache)
    try:
        return scores.whole(split)
    finally:
        scores.close()
