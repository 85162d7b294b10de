"""A/B: fixed chunks of 16 against the DP batches, on a screened 32-example probe and a 128-example re-score.

Interleaved in one process, median of the last 3 of 4 repeats each, on the quick bench's real Theta' and old
adapter. Needs a finished quick bench in runs/bench-quick3 (the README's demo command).
Run: .venv/bin/python scripts/ab_eval_batching.py
"""
import json, time, statistics
import relora.scoring as sc
from relora.adapter import read_adapter, attach_lora, LoraAdapter
from relora.config import ReadaptConfig
from relora.readapt import load_inputs
from relora.methods import METHODS
from relora.models import cache_root, load_model

def fixed(lengths, max_size, overhead=0):
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i:i + max_size] for i in range(0, len(order), max_size)]

dp = sc.length_sorted_batches
cfg = json.load(open("runs/bench-quick3/seed0/wn-topic/computing/relora/relora.json"))["config"]
L = load_inputs(ReadaptConfig(**cfg), METHODS["relora"], cache_root(cfg["cache_dir"]))
old = read_adapter(cfg["adapter"])
model = attach_lora(load_model(L.new_dir), old, 0)
res = {}
for n in (32, 128):
    items = L.val[:n]
    times = {"fixed": [], "dp": []}
    losses = {}
    for rep in range(4):
        for name, fn in (("fixed", fixed), ("dp", dp)):
            sc.length_sorted_batches = fn
            t = time.perf_counter(); r = sc.evaluate(model, items, L.pad_id, 16); times[name].append(time.perf_counter() - t)
            losses[name] = (r.loss, r.accuracy)
    sc.length_sorted_batches = dp
    res[n] = {k: statistics.median(v[1:]) for k, v in times.items()}
    print(n, res[n], "ratio", res[n]["fixed"] / res[n]["dp"], losses)
