"""One row of `relora lab perf` each: a stage of ours against the plain way, same process, same inputs.

Every row is a ratio measured in one run (medians of repeats), because these
machines are noisy.
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

from relora.lab.cell import cells_of
from relora.lab.perf.reference import reference_evaluate
from relora.core.model.data import ScoringItem
from relora.core.method.methods import RELORA
from relora.core.model.scoring import evaluate


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def probe_row(model: torch.nn.Module, items: list[ScoringItem], pad_id: int, repeats: int) -> dict[str, Any]:
    plain_s, plain = median_time(lambda: reference_evaluate(model, items, pad_id, 16), repeats)
    ours_s, res = median_time(lambda: evaluate(model, items, pad_id, 16), repeats)
    limit = decoder_limit(model, items)
    return {"stage": "probe evaluation", "ours_s": ours_s, "plain_s": plain_s, "speedup": plain_s / ours_s,
            "abs_loss_diff": abs(res.loss - plain.loss), "same_accuracy": res.correct == plain.correct,
            "n_examples": len(items), **limit, "limit_speedup": plain_s / limit["limit_s"],
            "target": ">= 3x, numbers equal to 1e-5"}


def decoder_limit(model: torch.nn.Module, items: list[ScoringItem]) -> dict[str, float]:
    """The physical floor of any exact fp32 evaluator: every prompt token must pass through every
    decoder matrix, at this machine's measured fp32 GEMM rate for the model's own shapes."""
    from relora.core.model.scoring import causal_parts

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

    from relora.core.method.train import Schedule, TrainData, Watch, train

    batch = 16
    sched = Schedule(steps=steps, e1=steps, lr=1e-4, lr_min=1e-5, lambda1=0.0, lambda2=0.0, batch_size=batch,
                     micro_batch_size=batch, eval_every=10**9)
    start = time.perf_counter()
    out = train(model, TrainData(train=items, screen=items[:1], pad_id=pad_id), sched, seed=0, clock_start=start,
                watch=Watch(progress=False))
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


def delta_row(old: Path, new: Path, modules: list[str], r: int) -> dict[str, Any]:
    results = {}
    for method in ("streamed", "dense"):
        cmd = [sys.executable, "-m", "relora.lab.perf.children", "_delta", str(old), str(new), str(r), method, *modules]
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
    from relora.lab.search_check import bench_relora_cell, readapt_child, run_config

    config = run_config(bench_relora_cell(bench_dir), "default", 0, work / "memory-readapt")
    config |= {"stop_when_ready": False, "training": config["training"] | {"steps": 10, "eval_every": 5}}
    readapt_mb = readapt_child(config).peak_rss_mb
    cmd = [sys.executable, "-m", "relora.lab.perf.children", "_one_base", str(new)]
    one_base_mb = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["peak_rss_mb"]
    weights_mb = fp32_megabytes(new)
    return {"stage": "readapt peak RSS", "peak_rss_mb": readapt_mb, "fp32_weights_mb": weights_mb,
            "one_base_process_mb": one_base_mb, "ratio": readapt_mb / weights_mb,
            "ratio_to_one_base_process": readapt_mb / one_base_mb, "training_steps": 10,
            "target": "<= 2x one fp32 base"}


def fp32_megabytes(model_dir: Path) -> float:
    from relora.core.model.weights import WeightReader

    reader = WeightReader(model_dir)
    return sum(4 * math.prod(reader.shape(n)) for n in reader.names()) / 2**20


def end_to_end_row(bench_dir: Path) -> dict[str, Any]:
    results = bench_dir / "results.json"
    cells = [c for c in cells_of(json.loads(results.read_text())) if c.cell == RELORA]
    shares = [c.search_s / c.total_s for c in cells]
    return {"stage": "end to end", "search_share_of_total": statistics.fmean(shares), "cells": len(cells),
            "source": str(results), "target": "search < 10% of total"}
