"""PNG plots for bench reports (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from relora.lab.cell import BenchCell, cells_of  # noqa: E402
from relora.core.method.methods import RELORA, METHODS  # noqa: E402


def plot_curves(cells: list[BenchCell], out: Path) -> list[Path]:
    """Validation accuracy against wall seconds per method, with the threshold (Figure 3)."""
    paths = []
    seed = min(c.seed for c in cells)
    for task, corpus in sorted({(c.task, c.corpus) for c in cells}):
        group = [c for c in cells if (c.task, c.corpus, c.seed) == (task, corpus, seed)]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for c in group:
            ev = c.events
            style = {"marker": "o"} if len(ev) == 1 else {}
            ax.plot([e.wall_s for e in ev], [e.val_accuracy for e in ev], label=c.cell, **style)
        ax.axhline(group[0].threshold, color="grey", linestyle="--", label="readiness threshold")
        if group[0].old_adapter_old_base_val_accuracy is not None:
            ax.axhline(group[0].old_adapter_old_base_val_accuracy, color="black", linestyle=":",
                       label="old service quality (old adapter, old base)")
        ax.set(xlabel="wall seconds since re-adaptation start (search included)", ylabel="validation accuracy",
               title=f"{task}, update: {corpus}, seed {seed}")
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / f"accuracy_vs_time_{task}_{corpus}.png"))
    return paths


def plot_bo_probes(cells: list[BenchCell], out: Path) -> list[Path]:
    """The BO probes over the (alpha, beta) plane on a contour of the GP posterior mean of -L_val."""
    from relora.core.model.config import SearchConfig
    from relora.core.method.search.gp import bounds_tensor, fit_gp, observations

    paths = []
    for c in cells:
        if c.cell != RELORA or c.seed != min(x.seed for x in cells):
            continue
        cfg = SearchConfig(**c.config["search"])
        everything = list(c.probes)
        probes = [p for p in everything if p.stage == "explore"]  # one fidelity per GP
        gp = fit_gp(*observations(probes), bounds_tensor(cfg))
        a = torch.linspace(*cfg.alpha_bounds, 60, dtype=torch.float64)
        b = torch.linspace(*cfg.beta_bounds, 60, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(a, b, indexing="xy"), -1)
        with torch.no_grad():
            mean = -gp.posterior(grid.reshape(-1, 2)).mean.reshape(60, 60)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        filled = ax.contourf(a, b, mean, levels=20, cmap="viridis_r")
        fig.colorbar(filled, label="GP mean of validation loss")
        ax.scatter([p.alpha for p in probes], [p.beta for p in probes], c="white", edgecolors="black", s=30,
                   label="probes")
        rescored = [p for p in everything if p.stage == "rescore"]
        if rescored:
            ax.scatter([p.alpha for p in rescored], [p.beta for p in rescored], facecolors="none", edgecolors="red",
                       s=90, label="re-scored on all of D_val")
        ax.scatter([c.alpha], [c.beta], marker="*", c="red", s=200, label="chosen")
        ax.scatter([0.0], [1.0], marker="x", c="orange", s=80, label="PortLLM (0, 1)")
        ax.set(xlabel="alpha (base delta)", ylabel="beta (old adapter)", title=f"BO probes, {c.task}, update: {c.corpus}")
        ax.legend(fontsize=8, loc="upper left")
        paths.append(_save(fig, out / f"bo_probes_{c.task}_{c.corpus}.png"))
    return paths


def plot_readiness_bars(cells: list[BenchCell], out: Path) -> list[Path]:
    trained = [c for c in cells if c.steps > 0]
    labels = sorted({(c.task, c.corpus, c.cell) for c in trained})
    values = []
    for key in labels:
        times = [c.ready_s for c in trained if (c.task, c.corpus, c.cell) == key]
        values.append(sum(t for t in times if t is not None) / max(1, sum(t is not None for t in times)))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.barh([f"{cell} ({task}, {corpus})" for task, corpus, cell in labels], values, color="steelblue")
    ax.set(xlabel="time to readiness (s, search included)", title="Time-to-readiness (lower is better)")
    return [_save(fig, out / "time_to_readiness.png")]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_backbone_readiness(benches: dict[str, dict[str, Any]], out: Path) -> Path:
    """Figure 4: time-to-readiness of each trained method, one bar group per backbone (first task/source)."""
    methods = [m.name for m in METHODS.values() if m.trains
               if any(c.cell == m.name for r in benches.values() for c in cells_of(r))]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(methods))
    for i, method in enumerate(methods):
        values = []
        for results in benches.values():
            cells = cells_of(results)
            first = (cells[0].task, cells[0].corpus)
            times = [c.ready_s for c in cells
                     if c.cell == method and (c.task, c.corpus) == first and c.ready_s is not None]
            values.append(sum(times) / len(times) if times else float("nan"))  # not reached: no bar
        ax.bar([j + i * width for j in range(len(benches))], values, width, label=method)
    ax.set_xticks([j + width * (len(methods) - 1) / 2 for j in range(len(benches))], list(benches))
    ax.set(ylabel="time to readiness (s, search included)", title="Time-to-readiness per backbone (lower is better)")
    ax.legend(fontsize=8)
    return _save(fig, out / "backbones_time_to_readiness.png")
