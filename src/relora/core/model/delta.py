"""Pi_r of the base delta, streamed one module at a time and cached on disk.

Only two weight matrices (old and new of one module) are in memory at once.
The cache key covers both bases' content hashes, the modules, r and the SVD
method, so every adapter on the same base pair reuses the factors.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from relora.core.model.weights import WeightReader, check_same_architecture
from relora.core.math.ops import LowRank, SvdMethod, project_delta
from relora.io import atomic_write_with


@dataclass
class DeltaProjection:
    factors: dict[str, LowRank]
    dropped_energy: dict[str, float]  # relative ||dW - Pi_r(dW)||^2 / ||dW||^2
    relative_delta: dict[str, float]  # ||dW|| / ||W||, how far the base moved
    cached: bool
    seconds: float = 0.0  # what computing it took, as measured then (charged to every search that uses it)


@dataclass(frozen=True, kw_only=True)
class SvdSpec:
    """Which truncated SVD of each module's delta: its rank, the algorithm, its seed (randomized), and where it
    runs."""
    r: int
    method: SvdMethod
    seed: int = 0
    device: torch.device | str = "cpu"


def cache_key(old_hash: str, new_hash: str, modules: list[str], svd: SvdSpec) -> str:
    """The projection's cache name: both bases, the modules and the SVD (not where it runs)."""
    blob = json.dumps([old_hash, new_hash, sorted(modules), svd.r, svd.method, svd.seed])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def project_base_delta(old: WeightReader, new: WeightReader, modules: list[str], svd: SvdSpec, *,
                       cache_file: Path | None = None, progress: bool = True) -> DeltaProjection:
    """Pi_r(W' - W) for each module, computed in float32/float64 on svd.device; factors come back on the CPU."""
    r, method, seed, device = svd.r, svd.method, svd.seed, svd.device
    if cache_file is not None and cache_file.is_file():
        return _read_cache(cache_file)
    start = time.perf_counter()
    check_same_architecture(old, new, modules)
    factors, dropped, moved = {}, {}, {}
    for module in tqdm(modules, desc="project delta", disable=not progress, leave=False):
        name = f"{module}.weight"
        w_old = old.get(name).float().to(device)
        delta = new.get(name).float().to(device) - w_old
        lowrank, dropped[module] = project_delta(delta, r, method=method, seed=seed)
        factors[module] = lowrank.to("cpu")
        moved[module] = float(delta.norm() / w_old.norm().clamp_min(1e-12))
        del w_old, delta
    result = DeltaProjection(factors, dropped, moved, cached=False, seconds=time.perf_counter() - start)
    if cache_file is not None:
        _write_cache(cache_file, result)
    return result


def _write_cache(path: Path, proj: DeltaProjection) -> None:
    tensors = {}
    for module, lr in proj.factors.items():
        tensors[f"{module}.B"] = lr.B.contiguous()
        tensors[f"{module}.A"] = lr.A.contiguous()
    meta = {"dropped_energy": json.dumps(proj.dropped_energy), "relative_delta": json.dumps(proj.relative_delta),
            "seconds": str(proj.seconds)}
    atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def _read_cache(path: Path) -> DeltaProjection:
    with safe_open(path, framework="pt") as fh:
        meta = fh.metadata()
        names = {k.rsplit(".", 1)[0] for k in fh.keys()}
        factors = {m: LowRank(B=fh.get_tensor(f"{m}.B"), A=fh.get_tensor(f"{m}.A")) for m in names}
    return DeltaProjection(factors, json.loads(meta["dropped_energy"]), json.loads(meta["relative_delta"]), cached=True,
                           seconds=float(meta.get("seconds", 0.0)))  # caches from before it was recorded: 0
