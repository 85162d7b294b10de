"""Measurements that need a process of their own, so each has its own peak RSS.
Run as `python -m relora.lab.perf.children _delta|_one_base ...`; prints one JSON object."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from relora.provenance import peak_rss_mb


def delta_child(old: str, new: str, modules: list[str], r: int, method: str) -> dict[str, Any]:
    """Run in a child: 'streamed' = relora's projection; 'dense' = two full models + dense SVD."""
    from relora.core.model.delta import SvdSpec, project_base_delta
    from relora.core.model.models import load_model
    from relora.core.model.weights import WeightReader

    base_rss = peak_rss_mb()
    start = time.perf_counter()
    errors = {}
    if method == "streamed":
        proj = project_base_delta(WeightReader(Path(old)), WeightReader(Path(new)), modules,
                                  SvdSpec(r=r, method="randomized"), progress=False)
        errors = {m: v**0.5 for m, v in proj.dropped_energy.items()}
    else:
        old_sd, new_sd = load_model(Path(old)).state_dict(), load_model(Path(new)).state_dict()
        for m in modules:
            delta = new_sd[f"{m}.weight"] - old_sd[f"{m}.weight"]
            U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
            errors[m] = float(S[r:].pow(2).sum().sqrt() / S.pow(2).sum().sqrt())
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": base_rss,
            "errors": errors}


def one_base_child(model_dir: str) -> dict[str, Any]:
    from relora.core.model.models import load_model

    model = load_model(Path(model_dir))
    with torch.no_grad():
        model(input_ids=torch.ones((16, 24), dtype=torch.long))
    return {"peak_rss_mb": peak_rss_mb()}


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "_delta":
    _, _, old_dir, new_dir, rank, variant, *mods = sys.argv
    print(json.dumps(delta_child(old_dir, new_dir, mods, int(rank), variant)))


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "_one_base":
    print(json.dumps(one_base_child(sys.argv[2])))
