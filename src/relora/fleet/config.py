"""FLEET.yaml: one base update, many adapters. Validated once, with one error per bad field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from relora.core.model.config import Gate, ReadaptConfig, deep_merge, load_yaml, parse_gate, valid_gate
from relora.core.method.methods import DEFAULT_METHOD, method_for, method_named
from relora.errors import InputError


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdapterEntry(_Strict):
    name: str
    path: str
    train: str
    val: str
    test: str | None = None
    threshold: float | str | None = None  # e.g. 0.85, or "old - 0.01"; None: the fleet's default
    method: str | None = None
    _gate = field_validator("threshold")(valid_gate)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        """The name is a directory under out: (runs/<name>, published/<name>): one safe path component."""
        if not SAFE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a safe directory name: start with a letter or digit, then use only "
                             "letters, digits, '.', '_' and '-', at most 100 characters")
        return name

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str | None) -> str | None:
        return name if name is None else method_named(name).name


class FleetDefaults(_Strict):
    method: str = DEFAULT_METHOD

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        return method_named(name).name
    # "old - 0.05": a paired test against the old service's own quality, margin 0.05; or a fixed accuracy
    threshold: float | str = "old - 0.05"
    # publish only a service that kept at least this share of the update (needs update_probe)
    min_retention: float | None = Field(None, le=1.0, allow_inf_nan=False)  # NaN: "not a finite number"
    seed: int = 0
    _gate = field_validator("threshold")(valid_gate)
    readapt: dict[str, Any] = {}  # any ReadaptConfig keys: training.*, search.*, data.*


class RayConfig(_Strict):
    address: str | None = None  # None: start a local cluster
    num_gpus: float = 0.0  # per job
    num_cpus: float = 1.0  # per job
    max_retries: int = 2


MIN_LEASE_S = 3.0  # three heartbeats of at least 1 s each


class FleetConfig(_Strict):
    old_base: str
    new_base: str
    out: str
    update_probe: str | None = None  # text of the kind the update was made for: every job measures retention
    # serving engines that must load each re-adapted adapter before it is published (relora preflight's rules)
    preflight: list[Literal["vllm", "sglang", "lorax"]] = []
    defaults: FleetDefaults = FleetDefaults()
    adapters: list[AdapterEntry] = Field(min_length=1)
    executor: Literal["local", "ray"] = "local"
    workers: int = Field(1, ge=1)  # local: in-process when 1, else N worker processes
    gpus: list[int] = []  # local: pin worker i to GPU gpus[i] (CUDA_VISIBLE_DEVICES); one per worker
    # gpus on a machine without those CUDA devices is refused; true runs the pinned workers on the CPU instead
    # (a GPU fleet file tried on a laptop), and every row's device column says so
    gpus_optional: bool = False
    ledger: str | None = None  # SQLAlchemy URL; default sqlite:///<out>/ledger.sqlite3
    lease_s: float = 900.0  # a running job's lease; its heartbeat renews it every lease_s / 4 s (at least 1 s)
    ray: RayConfig = RayConfig()
    cache_dir: str | None = None

    @field_validator("lease_s")
    @classmethod
    def _lease_outlives_heartbeats(cls, lease_s: float) -> float:
        if not lease_s >= MIN_LEASE_S:
            raise ValueError(f"must be at least {MIN_LEASE_S:g} s: a running job renews its lease at most once a second, "
                             "so a shorter lease expires between heartbeats and another rollout takes the job and does "
                             "it twice")
        return lease_s

    @field_validator("adapters")
    @classmethod
    def _unique_names(cls, entries: list[AdapterEntry]) -> list[AdapterEntry]:
        names = [e.name for e in entries]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"adapter names must be unique (repeated: {', '.join(dupes)})")
        return entries

    @model_validator(mode="after")
    def _one_gpu_per_worker(self) -> FleetConfig:
        if self.gpus and len(self.gpus) != self.workers:
            raise ValueError(f"gpus lists {len(self.gpus)} GPUs for {self.workers} workers; give one GPU per worker")
        return self

    @model_validator(mode="after")
    def _retention_needs_a_probe(self) -> FleetConfig:
        if self.defaults.min_retention is not None and not self.update_probe:
            raise ValueError("defaults.min_retention needs update_probe: a text file of the kind the update was for")
        return self

    @model_validator(mode="after")
    def _readapt_keys_valid(self) -> FleetConfig:
        for entry in self.adapters:
            method_for(self.readapt_config(entry))  # fails here, once, rather than mid-rollout
        return self

    @property
    def ledger_url(self) -> str:
        return self.ledger or f"sqlite:///{Path(self.out).resolve() / 'ledger.sqlite3'}"

    def method_of(self, entry: AdapterEntry) -> str:
        return entry.method or self.defaults.method

    def gate_of(self, entry: AdapterEntry) -> Gate:
        return parse_gate(entry.threshold if entry.threshold is not None else self.defaults.threshold)

    def readapt_config(self, entry: AdapterEntry) -> ReadaptConfig:
        """The job's readapt config: its gate is readapt's (relative gates are tested against the old service)."""
        tree = deep_merge(self.defaults.readapt, {
            "old_base": self.old_base, "new_base": self.new_base, "adapter": entry.path, "train": entry.train,
            "val": entry.val, "test": entry.test, "out": str(Path(self.out) / "runs" / entry.name),
            "update_probe": self.update_probe,
            "method": self.method_of(entry), "seed": self.defaults.seed,
            "threshold": entry.threshold if entry.threshold is not None else self.defaults.threshold,
            "force": True, "cache_dir": self.cache_dir,
        })
        return ReadaptConfig.model_validate(tree)  # its method's inputs are checked by plan_run, once per job


def load_fleet(path: str) -> FleetConfig:
    tree = load_yaml(path)
    base = Path(path).resolve().parent
    for entry in tree.get("adapters", []) or []:  # relative paths are relative to FLEET.yaml
        for key in ("path", "train", "val", "test"):
            if isinstance(entry, dict) and isinstance(entry.get(key), str) and not Path(entry[key]).is_absolute():
                entry[key] = str(base / entry[key])
    out = tree.get("out")
    if isinstance(out, str) and not out.strip():  # base / "" would be the fleet file's own directory
        raise InputError(path, "out: is empty", "give out: a directory of its own, e.g. out: runs/<update>")
    for key in ("old_base", "new_base", "out", "update_probe"):
        value = tree.get(key)
        relative = isinstance(value, str) and not Path(value).is_absolute()
        if relative and (key in ("out", "update_probe") or (base / value).exists()):  # a hub id stays as written
            tree[key] = str(base / value)
    if isinstance(tree.get("out"), str) and Path(path).resolve().is_relative_to(Path(tree["out"]).resolve()):
        raise InputError(path, f"out: {out} holds the fleet file itself",
                         "give out: a directory of its own, e.g. out: runs/<update>")
    try:
        return FleetConfig.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "fleet"
        raise InputError(path, f"{where}: {err['msg']}", f"correct '{where}' in the fleet file") from exc
