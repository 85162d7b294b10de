"""Table III and Figure 4 across backbones: one bench run per base, read back and set side by side.

Each bench run (`relora lab bench --base ...`) is self-contained; this report only reads
their results.json files, so a backbone is added by running one more bench.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relora.lab.cell import cells_of
from relora.core.method.methods import METHODS, PORTLLM, SCRATCH
from relora.errors import InputError
from relora.io import atomic_write
from relora.lab.report.tables import PAPER_ANALOGUE, paper_key, drop_points, groups, ratio, ready_speedups, stat
from relora.tables import markdown_head

# Table III of arXiv 2606.02606 (OpenOrca update): each task analogue's column, per paper backbone.
PAPER_TABLE_III = {
    "20News": {"zero-shot": (5.1, 6.2, 3.7), "scratch": (75.5, 73.4, 76.2), "portllm-ft": (75.7, 74.9, 76.4),
               "relora": (75.8, 76.3, 76.6)},
    "MNLI": {"zero-shot": (33.3, 33.3, 32.3), "scratch": (90.7, 91.5, 91.6), "portllm-ft": (90.7, 91.0, 92.6),
             "relora": (91.0, 91.2, 93.5)},
    "MMLU": {"zero-shot": (25.0, 25.2, 24.5), "scratch": (67.9, 75.3, 81.4), "portllm-ft": (68.3, 76.0, 82.5),
             "relora": (70.9, 76.6, 83.9)},
}
PAPER_BACKBONES = "LLaMA2-7B / Mistral-7B / LLaMA3.1-8B"


def load_benches(dirs: list[str]) -> dict[str, dict[str, Any]]:
    """Backbone name -> that bench's results (cells without the Table IX lambda rows)."""
    benches: dict[str, dict[str, Any]] = {}
    for d in dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise InputError(path, "no bench results here", f"run `relora lab bench --out {d}` first")
        results = json.loads(path.read_text())
        name = Path(str(results["base"])).name
        if name in benches:
            raise InputError(path, f"a second bench of backbone {name}", "pass one bench directory per backbone")
        results["cells"] = [c for c in cells_of(results) if not c.in_sweep]
        benches[name] = results
    return benches


def _paper(task: str, cell: str) -> str:
    values = PAPER_TABLE_III.get(PAPER_ANALOGUE.get(task, ""), {}).get(paper_key(cell))
    return " / ".join(f"{v}" for v in values) + f" ({PAPER_ANALOGUE[task]})" if values else "-"


def quality_rows(benches: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Table III: service quality (test accuracy) per backbone", "",
             *markdown_head("backbone", "task", "update", "method", "test acc", f"paper (%), {PAPER_BACKBONES}")]
    for name, results in benches.items():
        for (task, corpus, cell), group in groups(cells_of(results)).items():
            acc = [c.metrics.test_accuracy for c in group]
            lines.append(f"| {name} | {task} | {corpus} | {cell} | {stat(acc)} | {_paper(task, cell)} |")
    return lines


def readiness_rows(benches: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Figure 4 as a table: time-to-readiness per backbone", "",
             "Each backbone has its own threshold (the lowest best validation accuracy over its trained methods).", "",
             *markdown_head("backbone", "task", "update", "method", "PortLLM drop (points)", "threshold", "steps to ready",
                    "time to ready (s)", "speed-up vs scratch")]
    for name, results in benches.items():
        grouped = groups(cells_of(results))
        for (task, corpus, cell), group in grouped.items():
            if not METHODS[group[0].method].trains:
                continue
            speed = ready_speedups(grouped.get((task, corpus, SCRATCH), []), group)
            drop = drop_points(grouped.get((task, corpus, PORTLLM), []))
            lines.append(f"| {name} | {task} | {corpus} | {cell} | {stat(drop, '.1f')} | "
                         f"{stat([c.threshold for c in group])} | {stat([c.ready_step for c in group], '.0f')} | "
                         f"{stat([c.ready_s for c in group], '.1f')} | {ratio(speed)} |")
    return lines


def write_backbones_report(dirs: list[str], out: str) -> Path:
    """backbones.md (Table III, Figure 4's numbers) and backbones_time_to_readiness.png in out."""
    from relora.lab.report.plots import plot_backbone_readiness

    benches = load_benches(dirs)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    sources = ", ".join(f"{name}: `{d}` ({results['profile']['name']} profile)"
                        for (name, results), d in zip(benches.items(), dirs))
    plot = plot_backbone_readiness(benches, target)
    text = ["# relora across backbones", "", f"Bench runs: {sources}.", "",
            *quality_rows(benches), "", *readiness_rows(benches), "", f"![{plot.stem}]({plot.name})"]
    report = target / "backbones.md"
    atomic_write(report, "\n".join(text) + "\n")
    return report
