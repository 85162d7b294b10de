"""Bench reports: Markdown tables in the paper's shape, and PNG plots.

Paper numbers shown beside ours come from each task's closest analogue in the
paper (wn-topic ~ 20News, wn-relation ~ MNLI, wn-define ~ MMLU; LLaMA3.1-8B, OpenOrca).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from relora.lab.cell import BenchCell, cells_of
from relora.core.method.methods import RELORA, METHODS, PAPER_METHOD, PORTLLM, PORTLLM_FT, SCRATCH
from relora.tables import markdown_head, mean_std

# Tables II and VIII of arXiv 2606.02606 (LLaMA3.1-8B, OpenOrca update), for each task's closest analogue.
PAPER_ANALOGUE = {"wn-topic": "20News", "wn-relation": "MNLI", "wn-define": "MMLU"}
PAPER_QUALITY = {
    "20News": {"zero-shot (old base)": 4.6, "zero-shot": 3.7, "scratch": 76.2, "portllm-ft": 76.4, "relora": 76.6,
               "relora-no-sreg": 76.5},
    "MNLI": {"zero-shot (old base)": 31.4, "zero-shot": 32.3, "scratch": 91.6, "portllm-ft": 92.6, "relora": 93.5,
             "relora-no-sreg": 92.9},
    "MMLU": {"zero-shot (old base)": 26.2, "zero-shot": 24.5, "scratch": 81.4, "portllm-ft": 82.5, "relora": 83.9,
             "relora-no-sreg": 83.1},
}


def paper_key(cell: str) -> str | None:
    """The paper's name for a cell's method: its "ReLoRA" is our relora-paper; our relora has no paper row."""
    return "relora" if cell == PAPER_METHOD else None if cell == RELORA else cell


def paper_quality(task: str, cell: str) -> str:
    analogue = PAPER_ANALOGUE.get(task)
    value = PAPER_QUALITY.get(analogue, {}).get(paper_key(cell)) if analogue else None
    return f"{value} ({analogue})" if value is not None else "-"


PAPER_SEARCH_S = {"20News": {"relora": 3071, "relora-grid": 13691}, "MNLI": {"relora": 496, "relora-grid": 2279},
                  "MMLU": {"relora": 4573, "relora-grid": 20786}}  # Table IV
PAPER_ALPHA_BETA = {"20News": (0.3, 1.8), "MNLI": (0.4, 1.7), "MMLU": (0.7, 1.9)}  # Table V, OpenOrca
PAPER_ROLLOUT_MIN = {"20News": {"scratch": 1672, "portllm-ft": 955, "relora": 828},
                     "MNLI": {"scratch": 2791, "portllm-ft": 1331, "relora": 1009},
                     "MMLU": {"scratch": 3289, "portllm-ft": 1647, "relora": 1317}}  # Table VI


def paper_value(table: dict[str, Any], task: str, cell: str | None = None) -> str:
    analogue = PAPER_ANALOGUE.get(task, "")
    value = table.get(analogue)
    if cell is not None and isinstance(value, dict):
        value = value.get(paper_key(cell))
    return f"{value} ({analogue})" if value is not None else "-"


def stat(values: list[float | None], fmt: str = ".3f") -> str:
    present = [v for v in values if v is not None]
    mean, std = mean_std(present)
    if mean is None:
        return "not reached" if values else "-"
    text = format(mean, fmt)
    if len(present) > 1:
        text += " ± " + format(std, fmt)
    if len(present) < len(values):
        text += f" ({len(values) - len(present)} not reached)"
    return text


def ratio(values: list[float]) -> str:
    return stat(values, ".2f") + "x" if values else "-"


def groups(cells: list[BenchCell]) -> dict[tuple[str, str, str], list[BenchCell]]:
    """(task, update source, method) -> the cells of every seed."""
    grouped: dict[tuple[str, str, str], list[BenchCell]] = defaultdict(list)
    for c in cells:
        grouped[(c.task, c.corpus, c.cell)].append(c)
    return grouped


def by_seed(reference: list[BenchCell], group: list[BenchCell]) -> list[tuple[BenchCell, BenchCell]]:
    """(reference cell, cell) pairs of the same seed, in the group's seed order: a seed that one side lacks
    (not run, or failed) drops out instead of shifting every later pair."""
    ref = {c.seed: c for c in reference}
    return [(ref[c.seed], c) for c in sorted(group, key=lambda c: c.seed) if c.seed in ref]


def ready_speedups(scratch: list[BenchCell], group: list[BenchCell]) -> list[float]:
    """Scratch's time to ready over each cell's, seed by seed, where both got there."""
    return [s.ready_s / c.ready_s for s, c in by_seed(scratch, group) if c.ready_s and s.ready_s is not None]


def drop_points(portllm: list[BenchCell]) -> list[float]:
    """The PortLLM drop per seed: old adapter on the old base minus on the new base (val accuracy, points)."""
    return [100 * (c.old_adapter_old_base_val_accuracy - c.metrics.val_accuracy) for c in portllm]


def quality_table(cells: list[BenchCell]) -> list[str]:
    lines = ["## Table II: service quality (test accuracy) per update source", "",
             *markdown_head("task", "update", "method", "test acc", "val acc", "paper (%)")]
    for (task, corpus, cell), group in groups(cells).items():
        lines.append(f"| {task} | {corpus} | {cell} | {stat([c.metrics.test_accuracy for c in group])} | "
                     f"{stat([c.metrics.val_accuracy for c in group])} | {paper_quality(task, cell)} |")
    return lines


def readiness_table(cells: list[BenchCell]) -> list[str]:
    lines = ["## Time-to-readiness (Figure 3) and end-to-end rollout (Tables VI-VII)", "",
             "Threshold: the lowest best validation accuracy over the trained methods (the paper's "
             "\"a level that all methods can reach\"), per update source and seed.", "",
             "Old quality: the old adapter's validation accuracy on the old base, i.e. the service as it was; "
             "the steps and seconds until a method's curve first reaches it.", "",
             *markdown_head("task", "update", "method", "threshold", "steps to ready", "time to ready (s)",
                    "ready speed-up vs scratch", "steps to old quality", "time to old quality (s)", "rollout (s)",
                    "rollout speed-up vs scratch", "paper rollout (min)")]
    grouped = groups(cells)
    for (task, corpus, cell), group in grouped.items():
        if not METHODS[group[0].method].has_adapter:
            continue
        scratch = grouped.get((task, corpus, SCRATCH), [])
        speed = [s.total_s / c.total_s for s, c in by_seed(scratch, group) if c.steps > 0]
        ready_speed = ready_speedups(scratch, group)
        lines.append(f"| {task} | {corpus} | {cell} | {stat([c.threshold for c in group])} | "
                     f"{stat([c.ready_step for c in group], '.0f')} | {stat([c.ready_s for c in group], '.1f')} | "
                     f"{ratio(ready_speed)} | {stat([c.restore_step for c in group], '.0f')} | "
                     f"{stat([c.restore_s for c in group], '.1f')} | "
                     f"{stat([c.total_s for c in group], '.1f')} | {ratio(speed)} | "
                     f"{paper_value(PAPER_ROLLOUT_MIN, task, cell)} |")
    return lines


def old_quality_race(cells: list[BenchCell]) -> list[str]:
    """The bar a provider promises: time until each method's readiness curve first reaches the old
    service's own quality (old adapter, old base), search included, over seeds, against PortLLM+FT."""
    lines = ["## Back to the old service's quality (the primary bar)", "",
             "Seconds from the start of re-adaptation (search included) until validation accuracy first reaches the "
             "old adapter's accuracy on the old base; mean ± std over the seeds that got there. The ratio is "
             "PortLLM+FT's time over the method's, per seed where both got there (above 1: faster than PortLLM+FT). "
             "Init val acc: the readiness check before any training step. Search share: the search's charged "
             "seconds over the time to old quality. Retention: the update kept on a held-out slice of its corpus (1: "
             "as PortLLM keeps it, 0: reverted).", "",
             *markdown_head("task", "update", "method", "seeds back", "time to old quality (s)", "steps",
                            "vs portllm-ft (median)", "per-seed ratios", "init val acc", "probes", "search (s)",
                            "search share", "final val acc", "retention")]
    grouped = groups(cells)
    for (task, corpus, cell), group in grouped.items():
        if not METHODS[group[0].method].trains:
            continue
        ft = grouped.get((task, corpus, PORTLLM_FT), [])
        ratios = [f.restore_s / c.restore_s for f, c in by_seed(ft, group)
                  if f.restore_s is not None and c.restore_s]
        back = sum(c.restore_s is not None for c in group)
        searched = [c for c in group if c.probes]
        share = [c.search_s / c.restore_s for c in searched if c.restore_s]
        lines.append(f"| {task} | {corpus} | {cell} | {back}/{len(group)} | "
                     f"{stat([c.restore_s for c in group], '.1f')} | "
                     f"{stat([c.restore_step for c in group], '.0f')} | "
                     f"{format(statistics.median(ratios), '.2f') + 'x' if ratios else '-'} | "
                     f"{', '.join(format(r, '.2f') for r in ratios) or '-'} | "
                     f"{stat([c.init_val_accuracy for c in group])} | "
                     f"{stat([len(c.probes) for c in searched], '.1f') if searched else '-'} | "
                     f"{stat([c.search_s for c in searched], '.1f') if searched else '-'} | "
                     f"{stat(share, '.2f') if share else '-'} | "
                     f"{stat([c.metrics.val_accuracy for c in group])} | "
                     f"{stat([c.retention.value for c in group if c.retention], '.2f')} |")  # '-': unmeasured
    return lines


def search_tables(cells: list[BenchCell]) -> list[str]:
    lines = ["## Table IV: search overhead (GP vs grid) and Table V: chosen (alpha, beta)", "",
             *markdown_head("task", "update", "method", "probes", "examples scored", "search (s)", "alpha", "beta", "paper search (s)", "paper (alpha, beta)")]
    for (task, corpus, cell), group in groups(cells).items():
        if "IV" not in METHODS[group[0].method].tables:
            continue
        lines.append(f"| {task} | {corpus} | {cell} | {len(group[0].probes)} | "
                     f"{stat([sum(p.n_examples or c.n_examples['val_search'] for p in c.probes) for c in group], '.0f')} | "
                     f"{stat([c.search_s for c in group], '.1f')} | "
                     f"{stat([c.alpha for c in group])} | {stat([c.beta for c in group])} | "
                     f"{paper_value(PAPER_SEARCH_S, task, cell)} | "
                     f"{paper_value(PAPER_ALPHA_BETA, task) if cell == PAPER_METHOD else '-'} |")
    return lines


def ablation_table(cells: list[BenchCell]) -> list[str]:
    lines = ["## Table VIII: ablation", "", *markdown_head("task", "update", "method", "test acc", "steps to ready", "paper (%)")]
    for (task, corpus, cell), group in groups(cells).items():
        if "VIII" in METHODS[group[0].method].tables:
            lines.append(f"| {task} | {corpus} | {cell} | {stat([c.metrics.test_accuracy for c in group])} | "
                         f"{stat([c.ready_step for c in group], '.0f')} | {paper_quality(task, cell)} |")
    return lines


def lambda_table(cells: list[BenchCell]) -> list[str]:
    rows = [c for c in cells if c.in_sweep]
    if not rows:
        return []
    lines = ["## Table IX: lambda1 / lambda2 sensitivity", "",
             "relora at each anchor strength (lambda2 in stage 2), one seed. Negative flips: readiness-set "
             "examples the old service got right and the final adapter gets wrong.", "",
             *markdown_head("task", "update", "lambda1", "lambda2", "anchor", "test acc", "final val acc",
                            "steps to ready", "time to ready (s)", "steps to old quality", "time to old quality (s)",
                            "negative flips")]
    for c in rows:
        flips = c.negative_flip_rate
        lines.append(f"| {c.task} | {c.corpus} | {c.lambdas[0]:g} | {c.lambdas[1]:g} | "
                     f"{c.anchor or 'coupled'} | {stat([c.metrics.test_accuracy])} | "
                     f"{stat([c.metrics.val_accuracy])} | {stat([c.ready_step], '.0f')} | "
                     f"{stat([c.ready_s], '.1f')} | {stat([c.restore_step], '.0f')} | "
                     f"{stat([c.restore_s], '.1f')} | {'-' if flips is None else format(flips, '.3f')} |")
    return lines


def portllm_drop(cells: list[BenchCell]) -> list[str]:
    lines = [*markdown_head("task", "update", "old adapter on old base", "PortLLM on new base", "drop (points)")]
    for (task, corpus, cell), group in groups(cells).items():
        if cell == PORTLLM:
            before = [c.old_adapter_old_base_val_accuracy for c in group]
            after = [c.metrics.val_accuracy for c in group]
            lines.append(f"| {task} | {corpus} | {stat(before)} | {stat(after)} | {stat(drop_points(group), '.1f')} |")
    return lines


def demo_summary(results: dict[str, Any], out: Path) -> list[str]:
    """The few lines `relora demo` prints: the drop, each method's quality and readiness, where to look."""
    every = cells_of(results)
    first_seed = min(c.seed for c in every)
    cells = [c for c in every if not c.in_sweep and c.seed == first_seed]
    first = (cells[0].task, cells[0].corpus)
    group = [c for c in cells if (c.task, c.corpus) == first]
    scratch = next((c for c in group if c.cell == SCRATCH), None)
    lines = [f"relora demo: {Path(str(results['base'])).name}, task {first[0]}, update {first[1]}, "
             f"threshold {group[0].threshold:.3f} (val accuracy)", *portllm_drop(group), "",
             f"{'method':22s} {'test acc':>8s} {'ready after':>12s} {'vs scratch':>10s} {'old quality after':>18s} "
             f"{'rollout':>9s}"]
    for c in group:
        ready = f"{c.ready_s:.0f} s" if c.ready_s is not None else "never"
        restored = f"{c.restore_s:.0f} s" if c.restore_s is not None else "never"
        speed = (f"{scratch.ready_s / c.ready_s:.2f}x" if scratch and scratch.ready_s and c.ready_s
                 and c.steps > 0 else "-")
        acc = c.metrics.test_accuracy
        lines.append(f"{c.cell:22s} {acc if acc is None else format(acc, '.3f'):>8} {ready:>12s} {speed:>10s} {restored:>18s} "
                     f"{c.total_s:>7.0f} s")
    lines += ["", f"Full report: {out / 'report.md'}; plots: {', '.join(sorted(p.name for p in out.glob('*.png')))}"]
    return lines


def write_report(results: dict[str, Any], out: Path) -> None:
    from relora.lab.report.page import write_bench_page
    from relora.lab.report.plots import plot_bo_probes, plot_curves, plot_readiness_bars

    every = cells_of(results)
    cells = [c for c in every if not c.in_sweep]  # Table IX has its own rows
    header = [f"# relora lab bench ({results['profile']['name']} profile)", "",
              f"Base: {results['base']}; tasks {', '.join(results['profile']['tasks'])} (WordNet, see relora/lab/tasks.py); "
              f"update sources: {', '.join(results['profile']['corpora'])}; seeds {results['profile']['seeds']}.", "",
              "The PortLLM drop: the old adapter on the old base against PortLLM (the same adapter on the new base), "
              "validation accuracy:", "", *portllm_drop(cells), "",
              "Set-up time (assets, evolution, old adapters), reported apart from rollout: "
              + ", ".join(f"{k} {v:.0f}s" for k, v in results['setup_s'].items()), ""]
    body = old_quality_race(cells) + [""] + quality_table(cells) + [""] + readiness_table(cells) + [""] + search_tables(cells) + [""] + \
        ablation_table(cells) + [""] + lambda_table(every)
    plots = plot_curves(cells, out) + plot_bo_probes(cells, out) + plot_readiness_bars(cells, out)
    body += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    (out / "report.md").write_text("\n".join(header + body) + "\n")
    write_bench_page(out)
