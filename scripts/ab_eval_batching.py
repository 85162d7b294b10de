"""A/B: fixed chunks of 16 against the DP batches, on a screened 32-example probe and a 128-example re-score.

Interleaved in one process, median of the last 3 of 4 repeats each, on the quick bench's real Theta' and old
adapter. Needs a finished quick bench in runs/bench-quick3 (the README's demo command).
Run: .venv/bin/python scripts/ab_eval_batching.py
"""

from __future__ import annotations

import json
import statistics
import time

import relora.core.model.scoring as scoring
from relora.core.model.adapter import attach_lora, read_adapter
from relora.core.model.config import ReadaptConfig
from relora.core.method.methods import METHODS
from relora.core.model.models import load_model
from relora.io import cache_root
from relora.core.run.readapt import load_inputs

RELORA_CELL = "runs/bench-quick3/seed0/wn-topic/computing/relora/relora.json"


def fixed_chunks(lengths: list[int], max_size: int) -> list[list[int]]:
    """The evaluator's batching before the DP: the length-sorted order cut every max_size."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i : i + max_size] for i in range(0, len(order), max_size)]


def main() -> None:
    cfg = json.load(open(RELORA_CELL))["config"]
    loaded = load_inputs(ReadaptConfig(**cfg), METHODS["relora"], cache_root(cfg["cache_dir"]))
    model = attach_lora(load_model(loaded.new_dir), read_adapter(cfg["adapter"]), 0)
    dp = scoring.length_sorted_batches
    for n in (32, 128):
        items = loaded.val[:n]
        times: dict[str, list[float]] = {"fixed": [], "dp": []}
        losses = {}
        for _ in range(4):
            for name, batching in (("fixed", fixed_chunks), ("dp", dp)):
                scoring.length_sorted_batches = batching  # evaluate() looks it up at call time
                start = time.perf_counter()
                result = scoring.evaluate(model, items, loaded.pad_id, 16)
                times[name].append(time.perf_counter() - start)
                losses[name] = (result.loss, result.accuracy)
        scoring.length_sorted_batches = dp
        median = {name: statistics.median(t[1:]) for name, t in times.items()}  # the first run warms up
        print(n, median, "ratio", median["fixed"] / median["dp"], losses)


if __name__ == "__main__":
    main()
