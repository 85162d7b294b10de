"""What the figure tests share: where the docs and their results files are, how a results file is read, and
how a figure is found in its page (test_docs_figures.py: the races, strengths and gates; test_docs_bench_figures.py:
the benches, the demo and performance)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
README, RESULTS_README = ROOT / "README.md", RESULTS / "README.md"
ARCHIVE_README = RESULTS / "archive" / "README.md"
METHOD_DOC = ROOT / "docs" / "method.md"
PERFORMANCE = ROOT / "docs" / "performance.md"


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def quoted(doc: Path, phrase: str) -> None:
    text = " ".join(doc.read_text().split())  # line breaks in the page do not matter
    assert phrase in text, f"{doc.relative_to(ROOT)} does not say {phrase!r} (what its results file gives)"


STRENGTH_METHODS = ("portllm-ft", "relora-reuse")


def ledger_rows(path: Path) -> dict[tuple[int, str], list[list[str]]]:
    """ledgers.md's service rows per (seed, method), each row's cells."""
    rows: dict[tuple[int, str], list[list[str]]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("## seed "):
            seed, method = line.removeprefix("## seed ").split(", ")
            key = (int(seed), method)
        elif line.startswith("| is-") or line.startswith("| wn-"):
            rows.setdefault(key, []).append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def ledger_services(path: Path) -> dict[tuple[int, str], dict[str, dict[str, str]]]:
    """ledgers.md per (seed, method): each service's row by name, its cells by the table's column names."""
    columns: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("| name |"):
            columns = [c.strip() for c in line.strip().strip("|").split("|")]
            break
    return {key: {cells[0]: dict(zip(columns, cells, strict=True)) for cells in rows}
            for key, rows in ledger_rows(path).items()}


def strength_row(method: str, info: dict[str, Any]) -> str:
    """One row of the results page's table for a strengths race, from its summary."""
    seeds = info["per_seed"]

    def spread(key: str) -> str:
        values = [s[key] for s in seeds]
        return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"

    return (f"| {method} | {info['compute_s_mean']:.0f} ± {info['compute_s_std']:.0f} | {info['zero_step_share']:.2f} | "
            f"{spread('ready')} | {spread('never_ready')} | {info['retention_mean']:.2f} | {info['retention_min']:.2f} | "
            f"{info['false_publishes_test']} of {info['services_tested']} | {info['examples_per_decision']:.0f} |")
