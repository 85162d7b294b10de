"""Every gate look of a race, with the screen that sent its checkpoint there: per method, seed and service, each
look's step, its D_val accuracy (screen_accuracy), the bar it cleared, the method's bar at step 0 (gate.screen_bar)
and the look's verdict. For a sliding screen, a look whose D_val is below the step-0 bar is one that only the
slide let through: the powered screen, whose bar stays at step 0's, would have trained on instead.

    .venv/bin/python scripts/screen_looks.py runs/fleet-strengths-moderate-sliding > docs/results/fleet-strengths-moderate-sliding/looks.json
"""

from __future__ import annotations

from pathlib import Path

from compute_split import print_for_race_folder, race_runs


def looks(race: Path) -> dict:
    """{method: {seed: {service: [{step, screen_accuracy, bar, step0_bar, verdict}]}}}"""
    out: dict[str, dict[str, dict[str, list[dict]]]] = {}
    for method, seed, record, run in race_runs(race):
        gate = run.get("gate") or {}
        out.setdefault(method, {}).setdefault(seed, {})[record.parts[-2]] = [
            {"step": look["step"], "screen_accuracy": look["screen_accuracy"], "bar": look.get("bar"),
             "step0_bar": gate.get("screen_bar"), "verdict": look["verdict"]} for look in gate.get("looks", [])]
    return out


if __name__ == "__main__":
    print_for_race_folder("screen_looks.py", looks)
