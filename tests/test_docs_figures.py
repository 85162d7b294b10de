"""Every figure the README and docs/results quote is re-derived here from the committed results file
that the text names, so a figure that drifts from its file fails the suite."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
README, RESULTS_README = ROOT / "README.md", RESULTS / "README.md"


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def quoted(doc: Path, phrase: str) -> None:
    text = " ".join(doc.read_text().split())  # line breaks in the page do not matter
    assert phrase in text, f"{doc.relative_to(ROOT)} does not say {phrase!r} (what its results file gives)"


def race_row(summary: dict[str, Any], label: str, key: str, fmt: str, best: str, methods: tuple[str, ...]) -> str:
    values = [summary["methods"][m][key] for m in methods]
    cells = [format(v, fmt) for v in values]
    cells = [f"**{c}**" if v == (min(values) if best == "min" else max(values)) else c for c, v in zip(cells, values)]
    return f"| {label} | " + " | ".join(cells) + " |"


RACE_METHODS = ("portllm-ft", "relora", "relora-paper")


@pytest.mark.parametrize("strength, label", [("strong", "strong update"), ("gentle", "second update")])
def test_the_readme_race_tables_are_their_summaries(strength: str, label: str) -> None:
    summary = load(f"fleet-race-{strength}/summary.json")
    m = summary["methods"]
    quoted(README, f"| fleet race, {label}, 12 services × 3 seeds | PortLLM+FT | relora | relora-paper |")
    quoted(README, race_row(summary, "CPU-s of search + training to all final (median over seeds)",
                            "compute_s_median", ".0f", "min", RACE_METHODS))
    zero = [f"{m[k]['zero_step_share']:.0%}" for k in RACE_METHODS]
    best = max(RACE_METHODS, key=lambda k: m[k]["zero_step_share"])
    zero = [f"**{z}**" if k == best else z for z, k in zip(zero, RACE_METHODS)]
    quoted(README, "| services ready at zero training steps (mean) | " + " | ".join(zero) + " |")
    kept = [f"{m[k]['retention_mean']:.2f} ({m[k]['retention_min']:.2f})" for k in RACE_METHODS]
    best = max(RACE_METHODS, key=lambda k: m[k]["retention_mean"])
    kept = [f"**{c.split()[0]}** {c.split()[1]}" if k == best else c for c, k in zip(kept, RACE_METHODS)]
    quoted(README, "| update retention, mean (worst service) | " + " | ".join(kept) + " |")
    quoted(README, race_row(summary, "time to ready (s, median of the seeds' medians)", "time_to_ready_median_s",
                            ".0f", "min", RACE_METHODS))
    quoted(README, "| service rollouts left below the gate (of 36) | "
                   + " | ".join(str(m[k]["never_ready"]) for k in RACE_METHODS) + " |")


def test_the_readme_status_line_is_both_races() -> None:
    strong, second = (load(f"fleet-race-{s}/summary.json")["methods"] for s in ("strong", "gentle"))

    def ratio(m: dict) -> str:
        return f"{m['relora']['compute_s_median'] / m['portllm-ft']['compute_s_median']:.2f}×"

    quoted(README, f"{strong['portllm-ft']['compute_s_median']:.0f} CPU-seconds (median over seeds) against "
                   f"{strong['relora']['compute_s_median']:.0f} for relora's fused init ({ratio(strong)}) after one, "
                   f"{second['portllm-ft']['compute_s_median']:.0f} against {second['relora']['compute_s_median']:.0f} "
                   f"({ratio(second)}) after the other")
    quoted(README, f"relora published {strong['relora']['zero_step_share']:.0%} and "
                   f"{second['relora']['zero_step_share']:.0%} of services with zero training steps (PortLLM+FT "
                   f"{strong['portllm-ft']['zero_step_share']:.0%})")
    assert second["portllm-ft"]["zero_step_share"] == strong["portllm-ft"]["zero_step_share"]
    quoted(README, f"kept {strong['relora']['retention_mean']:.2f} and {second['relora']['retention_mean']:.2f} of "
                   f"the update (PortLLM+FT {strong['portllm-ft']['retention_mean']:.2f} and "
                   f"{second['portllm-ft']['retention_mean']:.2f})")
    ready = [s["ready"] for s in strong["portllm"]["per_seed"]]
    quoted(README, f"({min(ready)}–{max(ready)} of 12 cleared their gate here)")


def test_the_results_page_quotes_the_second_race() -> None:
    m = load("fleet-race-gentle/summary.json")["methods"]
    ft, relora, paper = m["portllm-ft"], m["relora"], m["relora-paper"]
    quoted(RESULTS_README, f"{ft['compute_s_median']:.0f} CPU-s (median over seeds) against "
                           f"{relora['compute_s_median']:.0f} for relora "
                           f"({relora['compute_s_median'] / ft['compute_s_median']:.2f}×) "
                           f"and {paper['compute_s_median']:.0f} for relora-paper")
    quoted(RESULTS_README, f"({paper['never_ready']} of 36 rollouts, against {ft['never_ready']} for PortLLM+FT and "
                           f"{relora['never_ready']} for relora)")
    quoted(RESULTS_README, f"Retention** is {ft['retention_mean']:.2f} for PortLLM+FT (worst service "
                           f"{ft['retention_min']:.2f}), {relora['retention_mean']:.2f} for relora "
                           f"({relora['retention_min']:.2f}) and {paper['retention_mean']:.2f} for relora-paper "
                           f"({paper['retention_min']:.2f})")


def test_the_quick_bench_time_split() -> None:
    quick = load("quick/results.json")
    share = quick["setup_s"]["evolve_computing_s"] / quick["bench_s_runs"][0]
    quoted(RESULTS_README, f"evolution {quick['setup_s']['evolve_computing_s']:.0f} s, the old adapter "
                           f"{quick['setup_s']['old_adapter_wn-topic_seed0_s']:.0f} s")
    quoted(RESULTS_README, f"Evolution is {share:.0%} of it")


def test_gemma_back_to_the_old_quality() -> None:
    cells = {c["method"]: c for c in load("quick-gemma3/results.json")["cells"]}
    ft, relora = cells["portllm-ft"], cells["relora"]
    quoted(RESULTS_README, f"ReLoRA takes {relora['restore_step']} steps ({relora['restore_s']:.0f} s) and "
                           f"PortLLM+FT {ft['restore_step']} ({ft['restore_s']:.0f} s)")


def test_the_rank_benches_cross_the_old_quality_at_the_quoted_steps() -> None:
    steps = [c["restore_step"] for name in ("rank-strong", "rank-gentle") for c in load(f"{name}/results.json")["cells"]
             if c.get("restore_step") is not None and c["method"] != "zero-shot"]
    quoted(RESULTS_README, f"(steps {min(steps)}–{max(steps)} of 60")


def test_the_anchor_sweep_default_against_no_anchor() -> None:
    cells = {c["cell"]: c for c in load("anchor-sweep/results.json")["cells"]}
    default, free = cells["relora"]["events"], cells["relora λ1=0 λ2=0 coupled"]["events"]
    assert [e["val_accuracy"] for e in default] == [e["val_accuracy"] for e in free]
    gap = max(abs(a["val_loss"] - b["val_loss"]) for a, b in zip(default, free, strict=True))
    quoted(RESULTS_README, "The default's accuracy curve equals λ = 0's at every check; its validation loss "
                           f"differs by at most {gap:.1e}")


def test_the_rank_table_ratios_are_medians_of_the_per_seed_ratios() -> None:
    cells = load("rank-strong/results.json")["cells"]
    by = {(c["method"], c["seed"]): c for c in cells}
    ratios = [by[("portllm-ft", s)]["restore_s"] / by[("relora", s)]["restore_s"] for s in (0, 1, 2)]
    quoted(RESULTS_README, f"{statistics.median(ratios):.2f}× ({', '.join(f'{r:.2f}' for r in ratios)})")
