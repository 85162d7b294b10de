"""Bench reports: Markdown tables in the paper's shape, and PNG plots.

Paper numbers shown beside ours are its 20News column (LLaMA3.1-8B, OpenOrca
update), the paper's closest analogue of our WordNet topic task.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

PAPER_20NEWS = {  # Tables II, IV-VIII of arXiv 2606.02606, 20News, OpenOrca
    "zero-shot (old base)": 4.6, "zero-shot": 3.7, "scratch": 76.2, "portllm-ft": 76.4, "relora": 76.6,
    "relora-no-sreg": 76.5,
}
PAPER_SEARCH_S = {"relora": 3071, "relora-grid": 13691}
PAPER_ALPHA_BETA = (0.3, 1.8)
PAPER_ROLLOUT_MIN = {"scratch": 1672, "portllm-ft": 955, "relora": 828}


def _stat(values: list[float | None], fmt: str = ".3f") -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "not reached" if values else "-"
    mean = statistics.fmean(present)
    text = format(mean, fmt)
    if len(present) > 1:
        text += " ± " + format(statistics.stdev(present), fmt)
    if len(present) < len(values):
        text += f" ({len(values) - len(present)} not reached)"
    return text


def _ratio(values: list[float]) -> str:
    return _stat(values, ".2f") + "x" if values else "-"


def _groups(cells: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for c in cells:
        grouped[(c["corpus"], c["cell"])].append(c)
    return grouped


def quality_table(cells: list[dict[str, Any]]) -> list[str]:
    lines = ["## Table II: service quality (test accuracy) per update source", "",
             "| update | method | test acc | val acc | paper 20News (%) |", "|---|---|---|---|---|"]
    for (corpus, cell), group in _groups(cells).items():
        paper = PAPER_20NEWS.get(cell)
        lines.append(f"| {corpus} | {cell} | {_stat([c['metrics'].get('test_accuracy') for c in group])} | "
                     f"{_stat([c['metrics']['val_accuracy'] for c in group])} | {paper if paper else '-'} |")
    return lines


def readiness_table(cells: list[dict[str, Any]]) -> list[str]:
    lines = ["## Time-to-readiness (Figure 3) and end-to-end rollout (Tables VI-VII)", "",
             "Threshold: the lowest best validation accuracy over the trained methods (the paper's "
             "\"a level that all methods can reach\"), per update source and seed.", "",
             "| update | method | threshold | steps to ready | time to ready (s) | ready speed-up vs scratch | "
             "rollout (s) | rollout speed-up vs scratch | paper rollout (min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    grouped = _groups(cells)
    for (corpus, cell), group in grouped.items():
        if cell.startswith("zero-shot"):
            continue
        scratch = grouped.get((corpus, "scratch"), [])
        speed = [s["total_s"] / c["total_s"] for s, c in zip(scratch, group) if c["steps"] > 0]
        ready_speed = [s["ready_s"] / c["ready_s"] for s, c in zip(scratch, group)
                       if c["ready_s"] and s["ready_s"] is not None]
        lines.append(f"| {corpus} | {cell} | {_stat([c['threshold'] for c in group])} | "
                     f"{_stat([c['ready_step'] for c in group], '.0f')} | {_stat([c['ready_s'] for c in group], '.1f')} | "
                     f"{_ratio(ready_speed)} | "
                     f"{_stat([c['total_s'] for c in group], '.1f')} | {_ratio(speed)} | "
                     f"{PAPER_ROLLOUT_MIN.get(cell, '-')} |")
    return lines


def search_tables(cells: list[dict[str, Any]]) -> list[str]:
    lines = ["## Table IV: search overhead (GP vs grid) and Table V: chosen (alpha, beta)", "",
             "| update | method | probes | search (s) | alpha | beta | paper search (s) | paper (alpha, beta) |",
             "|---|---|---|---|---|---|---|---|"]
    for (corpus, cell), group in _groups(cells).items():
        if cell not in ("relora", "relora-grid"):
            continue
        lines.append(f"| {corpus} | {cell} | {len(group[0]['probes'])} | {_stat([c['search_s'] for c in group], '.1f')} | "
                     f"{_stat([c['alpha'] for c in group])} | {_stat([c['beta'] for c in group])} | "
                     f"{PAPER_SEARCH_S.get(cell, '-')} | {PAPER_ALPHA_BETA if cell == 'relora' else '-'} |")
    return lines


def ablation_table(cells: list[dict[str, Any]]) -> list[str]:
    lines = ["## Table VIII: ablation", "", "| update | method | test acc | steps to ready | paper 20News (%) |",
             "|---|---|---|---|---|"]
    for (corpus, cell), group in _groups(cells).items():
        if cell in ("relora", "relora-no-sreg", "portllm-ft"):
            lines.append(f"| {corpus} | {cell} | {_stat([c['metrics'].get('test_accuracy') for c in group])} | "
                         f"{_stat([c['ready_step'] for c in group], '.0f')} | {PAPER_20NEWS[cell]} |")
    return lines


def write_report(results: dict[str, Any], out: Path) -> None:
    from relora.plots import plot_bo_probes, plot_curves, plot_readiness_bars

    cells = results["cells"]
    first = cells[0]
    header = [f"# relora bench ({results['profile']['name']} profile)", "",
              f"Base: {results['base']}; task wn-topic (WordNet noun gloss -> 8 lexicographer categories); "
              f"update sources: {', '.join(results['profile']['corpora'])}; seeds {results['profile']['seeds']}.", "",
              f"Old adapter on the old base, val accuracy: {first['old_adapter_old_base_val_accuracy']:.3f}; "
              f"zero-shot old base: {first['zero_shot_old_base']['val_accuracy']:.3f}.", "",
              f"Set-up time (assets, evolution, old adapters), reported apart from rollout: "
              + ", ".join(f"{k} {v:.0f}s" for k, v in results["setup_s"].items()), ""]
    body = quality_table(cells) + [""] + readiness_table(cells) + [""] + search_tables(cells) + [""] + \
        ablation_table(cells)
    plots = plot_curves(cells, out) + plot_bo_probes(cells, out) + plot_readiness_bars(cells, out)
    body += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    (out / "report.md").write_text("\n".join(header + body) + "\n")
