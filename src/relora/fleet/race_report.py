"""The fleet race's report: one table per method over seeds (mean ± std), the targets, and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relora.core.method.methods import RELORA, PORTLLM_FT
from relora.io import atomic_write
from relora.tables import markdown_head, markdown_row, mean_std

COLUMNS = (("compute_s", "compute to all final (CPU s)", 0), ("examples_scored", "… examples scored", 0),
           ("train_tokens", "… training tokens", 0), ("zero_step_share", "ready at 0 steps", 2),
           ("ready", "ready", 1), ("never_ready", "never ready", 1),
           ("never_ready_compute_s", "… their compute (CPU s)", 0), ("portllm_drop_points", "PortLLM drop (points)", 1),
           ("time_to_ready_median_s", "time to ready, median (s)", 1), ("time_to_ready_max_s", "max (s)", 1),
           ("quality_vs_old", "served − old quality", 3), ("search_share", "search share", 2), ("negative_flip_rate", "negative flips", 3),
           ("retention_mean", "retention mean", 2), ("retention_min", "retention worst", 2),
           ("false_publishes_test", "false publishes on test", 0),
           ("published_below_margin_point_test", "… point estimate", 0),
           ("examples_per_decision", "gate examples per service", 0), ("discordance_measured", "discordance", 3))


def _cell(values: list[Any], digits: int) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if not std else f"{mean:.{digits}f} ± {std:.{digits}f}"


def race_table(summary: dict[str, Any]) -> list[str]:
    lines = markdown_head("method", *(title for _, title, _ in COLUMNS))
    for method, info in summary["methods"].items():
        per_seed = info["per_seed"]
        seeds = ",".join(str(m["seed"]) for m in per_seed) or "none"
        lines.append(markdown_row(f"{method} (seeds {seeds})",
                                  *(_cell([m[key] for m in per_seed], d) for key, _, d in COLUMNS)))
    return lines


def compute_ratio(summary: dict[str, Any], method: str = RELORA, against: str = PORTLLM_FT) -> float | None:
    """The median over seeds of method's fleet compute over against's (the issue's 0.5x target)."""
    methods = summary["methods"]
    if method not in methods or against not in methods or not methods[against]["compute_s_median"]:
        return None
    return methods[method]["compute_s_median"] / methods[against]["compute_s_median"]


def unfinished_lines(summary: dict[str, Any]) -> list[str]:
    missing = {m: i["unfinished_seeds"] for m, i in summary["methods"].items() if i.get("unfinished_seeds")}
    if not missing:
        return []
    return ["Not finished, so left out of the table: " + "; ".join(f"{m} seeds {s}" for m, s in missing.items()), ""]


def targets(summary: dict[str, Any]) -> list[str]:
    ratio = compute_ratio(summary)
    info = summary["methods"].get(RELORA)
    if info is None:
        return []
    lines = []
    for method, i in summary["methods"].items():
        if i.get("false_publish_rate_test") is not None:
            lo, hi = i["false_publish_interval"]
            lines.append(f"- {method}: false publishes on test {i['false_publishes_test']} of {i['services_tested']} "
                         f"services ({i['false_publish_rate_test']:.3f}, 95% interval [{lo:.3f}, {hi:.3f}]; target ≤ "
                         f"alpha: {'met' if i['false_publish_rate_test'] <= alpha_of(summary) else 'missed'}), "
                         f"never ready {i['never_ready']}")
    return lines + [
        f"- relora's fleet compute over PortLLM+FT's (median over seeds): "
        + ("-" if ratio is None else f"{ratio:.2f}× (target ≤ 0.5×: {'met' if ratio <= 0.5 else 'missed'})"),
        f"- relora's mean retention: " + ("-" if info["retention_mean"] is None else
                                          f"{info['retention_mean']:.2f} (target ≥ 0.8: "
                                          f"{'met' if info['retention_mean'] >= 0.8 else 'missed'})"),
    ]


def alpha_of(summary: dict[str, Any]) -> float:
    return float(summary.get("gate", {}).get("alpha", 0.05))


def write_race_report(summary: dict[str, Any], root: Path) -> Path:
    prov = summary.get("provenance", {})
    pkgs = prov.get("packages", {})
    judged = sorted({j for info in summary["methods"].values() for m in info["per_seed"] for j in m["judged_on"]})
    text = [
        "# Fleet race", "",
        f"Seeds {summary['seeds']}; each method rolled out the same fleet once per seed with a cache of its own. "
        f"Readiness: a screen on D_val, then a confirmation on the gate set ({', '.join(judged)}) by "
        f"{summary.get('gate', {}).get('test', 'the gate')}, at alpha {alpha_of(summary):g} per service and margin "
        f"{summary.get('gate', {}).get('margin')}. Every publication is checked afterwards on a test split that no "
        "search, screen or gate scored: a false publish is one whose paired 95% upper bound on test is below "
        "-margin. Compute: CPU seconds of search, training and the gate (the old service's scoring included, "
        "charged to every method alike). Mean ± std over seeds.", "",
        *race_table(summary), "", *unfinished_lines(summary), "Targets:", "", *targets(summary), "",
        "![race](race.png)", "",
        f"Provenance: the re-adaptations ran at relora revision(s) {', '.join(summary.get('run_revisions') or ['-'])}; "
        f"summarized at {prov.get('git_revision')} on {prov.get('started_at')}; "
        + ", ".join(f"{k} {pkgs.get(k)}" for k in ("torch", "transformers", "peft")), "",
    ]
    _plot(summary, root / "race.png")
    path = root / "report.md"
    atomic_write(path, "\n".join(text))
    return path


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(summary["methods"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = (("compute_s", "CPU seconds to all final"), ("zero_step_share", "share ready at 0 steps"),
              ("retention_mean", "mean update retention"))
    for ax, (key, title) in zip(axes, panels):
        for i, method in enumerate(methods):
            values = [m[key] for m in summary["methods"][method]["per_seed"] if m[key] is not None]
            if values:
                ax.bar(i, sum(values) / len(values), color="lightsteelblue")
                ax.scatter([i] * len(values), values, color="navy", s=12, zorder=3)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_title(title, fontsize=10)
        if key == "zero_step_share":  # a share: all zeros would otherwise draw an axis around 0, negatives included
            ax.set_ylim(0, 1.05)
    fig.tight_layout()
    with path.open("wb") as fh:  # written whole by savefig, then the report names it
        fig.savefig(fh, dpi=110, format="png")
    plt.close(fig)
