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


def at_revert_point(row: dict[str, str]) -> bool:
    """A ledger row whose start was α = −1, β = 1: the rank-r projection of the base delta taken back out."""
    return (row["alpha"], row["beta"]) == ("-1.000", "1.000")


def strength_row(method: str, info: dict[str, Any]) -> str:
    """One row of the results page's table for a strengths race, from its summary."""
    seeds = info["per_seed"]

    def spread(key: str) -> str:
        values = [s[key] for s in seeds]
        return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"

    return (f"| {method} | {info['compute_s_mean']:.0f} ± {info['compute_s_std']:.0f} | {info['zero_step_share']:.2f} | "
            f"{spread('ready')} | {spread('never_ready')} | {info['retention_mean']:.2f} | {info['retention_min']:.2f} | "
            f"{info['false_publishes_test']} of {info['services_tested']} | {info['examples_per_decision']:.0f} |")


BANDS = ("mild", "moderate", "strong")
CANDIDATE = "portllm-ft-powered"
SLIDING = "portllm-ft-sliding"  # the second candidate, raced on seeds 6-8 band by band
FUSED = ("relora", "relora-paper")  # relora's fused inits, raced at the strong update on the powered race's seeds


def per_seed_ratio(methods: dict[str, Any], key: str, method: str, over: str = "portllm-ft") -> list[float]:
    """A method's per-seed figure over another's in the same race, seed by seed."""
    mine, theirs = methods[method]["per_seed"], methods[over]["per_seed"]
    assert [s["seed"] for s in mine] == [s["seed"] for s in theirs]
    return [m[key] / t[key] for m, t in zip(mine, theirs, strict=True)]


def mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def band_table() -> str:
    """The README's status table: per update strength, the script (from the powered race, seeds 3-5), the powered
    candidate over the script in that race, the sliding candidate over the script in its own race (seeds 6-8) where
    that band has one, and relora-reuse over the script in the strengths race (seeds 0-2)."""
    powered = {b: load(f"fleet-strengths-{b}-powered/summary.json")["methods"] for b in BANDS}
    reuse = {b: load(f"fleet-strengths-{b}/summary.json")["methods"] for b in BANDS}
    sliding = {b: load(f"fleet-strengths-{b}-sliding/summary.json")["methods"] for b in BANDS
               if (RESULTS / f"fleet-strengths-{b}-sliding" / "summary.json").exists()}
    fused = {"strong": load("fleet-strengths-strong-relora/summary.json")["methods"]}  # raced at the strong update only

    def if_raced(races: dict[str, Any], cell):  # a band with no such race says so
        return lambda b: cell(b) if b in races else "not raced"

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(b) for b in BANDS) + " |"

    def seeds(methods: dict[str, Any]) -> str:  # a race short of three seeds says so in its cells
        n = len(methods["portllm-ft"]["per_seed"])
        return "" if n >= 3 else f" ({n} seeds)"

    def tested(b: str) -> str:
        races = [*powered[b].values(), *reuse[b].values(), *sliding.get(b, {}).values(),
                 *(fused[b][m] for m in FUSED if b in fused)]  # the fused race's script is the powered one's
        return f"{sum(i['false_publishes_test'] for i in races)} of {sum(i['services_tested'] for i in races)}"

    def never(info: dict[str, Any]) -> str:
        return f"{info['never_ready']} of {sum(s['services'] for s in info['per_seed'])}"

    script = {b: powered[b]["portllm-ft"] for b in BANDS}
    return "\n".join([
        "| 12 services | mild | moderate | strong |",
        "|---|---|---|---|",
        row("PortLLM's drop on the fleet (points)", lambda b: f"{script[b]['portllm_drop_points']:.1f}"),
        row("the script: CPU-s to all final", lambda b: f"{script[b]['compute_s_mean']:.0f} ± "
                                                       f"{script[b]['compute_s_std']:.0f}"),
        row("… ready at zero steps", lambda b: f"{script[b]['zero_step_share']:.0%}"),
        row("… never ready", lambda b: never(script[b])),
        row(f"`{CANDIDATE}` ÷ the script, CPU-s", lambda b: mean_std(per_seed_ratio(powered[b], "compute_s", CANDIDATE))
            + seeds(powered[b])),
        row("… never ready", lambda b: never(powered[b][CANDIDATE])),
        row(f"`{SLIDING}` ÷ the script in its race, CPU-s", if_raced(sliding, 
            lambda b: mean_std(per_seed_ratio(sliding[b], "compute_s", SLIDING)) + seeds(sliding[b]))),
        row("… never ready vs the script's", if_raced(sliding, 
            lambda b: f"{never(sliding[b][SLIDING])} vs {sliding[b]['portllm-ft']['never_ready']}")),
        row(" / ".join(f"`{m}`" for m in FUSED) + " ÷ the script, CPU-s", if_raced(fused, lambda b: " / ".join(
            mean_std(per_seed_ratio(fused[b], "compute_s", m)) for m in FUSED))),
        row("… never ready; retention", if_raced(fused, lambda b: " / ".join(never(fused[b][m]) for m in FUSED) + "; "
                                                 + " / ".join(f"{fused[b][m]['retention_mean']:.2f}" for m in FUSED))),
        row("`relora-reuse` ÷ the script in its race, CPU-s", lambda b: f"{reuse[b]['relora-reuse']['compute_vs_portllm_ft']:.2f}"
            + seeds(reuse[b])),
        row("… update kept (retention) vs the script's", lambda b: f"{reuse[b]['relora-reuse']['retention_mean']:.2f} vs "
                                                              f"{reuse[b]['portllm-ft']['retention_mean']:.2f}"),
        row("false publishes on test, every method", tested),
    ])


def candidate_figures(methods: dict[str, Any], candidate: str) -> dict[str, str]:
    """A candidate against the script in one race, as the results page words it: the per-seed ratios (formatted as
    the README's band table formats them), never ready, retention, false publishes on test and looks."""
    ft, mine = methods["portllm-ft"], methods[candidate]

    def ratio(key: str) -> str:
        return mean_std(per_seed_ratio(methods, key, candidate))

    return {
        "drop": f"{ft['portllm_drop_points']:.1f}",
        "cpu": ratio("compute_s"), "scored": ratio("examples_scored"), "tokens": ratio("train_tokens"),
        "never": f"{mine['never_ready']} against {ft['never_ready']}",
        "retention": f"{mine['retention_mean']:.2f} (worst {mine['retention_min']:.2f}) against "
                     f"{ft['retention_mean']:.2f} ({ft['retention_min']:.2f})",
        "false": f"{mine['false_publishes_test']} of {mine['services_tested']} and "
                 f"{ft['false_publishes_test']} of {ft['services_tested']}",
        "looks": f"{sum(s['gate_looks'] for s in mine['per_seed'])} looks against "
                 f"{sum(s['gate_looks'] for s in ft['per_seed'])}",
    }


def check_race_table(race: str, *, profile: str, methods: tuple[str, ...]) -> None:
    """The results page's table rows and command for a candidate's race are its summary's (a race short of three
    seeds says so where its figures stand)."""
    info = load(f"{race}/summary.json")["methods"]
    for method in methods:
        quoted(RESULTS_README, strength_row(method, info[method]))
        assert info[method]["unfinished_seeds"] == []
    seeds = ",".join(str(s["seed"]) for s in info["portllm-ft"]["per_seed"])
    if len(info["portllm-ft"]["per_seed"]) < 3:
        quoted(RESULTS_README, "two seeds, short of the three a comparison needs")
    quoted(RESULTS_README, f"relora lab race --profile {profile} --seeds {seeds} --methods {','.join(methods)} "
                           f"--out runs/{race}")


def check_summary_against_ledgers(race: str, *, ledgers_of: dict[str, str] | None = None) -> None:
    """Each seed's services, ready count and gate examples per service in a race's summary are its ledgers' rows.
    ledgers_of: for methods whose seeds a summary took from another race (--earlier-summary), that race."""
    def services(method: str) -> dict[tuple[int, str], dict[str, dict[str, str]]]:
        return ledger_services(RESULTS / (ledgers_of or {}).get(method, race) / "ledgers.md")

    for method, info in load(f"{race}/summary.json")["methods"].items():
        rows_of = services(method)
        for seed in info["per_seed"]:
            rows = rows_of[(seed["seed"], method)].values()
            assert len(rows) == seed["services"] == 12
            assert sum(r["state"] == "ready" for r in rows) == seed["ready"]
            assert sum(int(r["gate_examples_scored"]) for r in rows) / 12 == seed["examples_per_decision"]


def check_candidate_prose(race: str, candidate: str) -> dict[str, str]:
    """The results page's bullets on a candidate's race quote its figures (candidate_figures); returns them for
    the page-specific checks."""
    f = candidate_figures(load(f"{race}/summary.json")["methods"], candidate)
    quoted(RESULTS_README, f"PortLLM lost {f['drop']} points on this fleet")
    quoted(RESULTS_README, f"CPU-s {f['cpu']} of the script's, examples scored {f['scored']}, training tokens "
                           f"{f['tokens']} (per-seed ratios, mean ± std)")
    quoted(RESULTS_README, f"never ready: {f['never']}")
    quoted(RESULTS_README, f"retention {f['retention']}")
    quoted(RESULTS_README, f"false publishes on test: {f['false']}")
    quoted(RESULTS_README, f["looks"])
    return f
