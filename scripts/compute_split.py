"""Where a race's compute went: per method and seed, the CPU seconds of every run (relora.json's cpu_s), and
how much of it was the old service's scoring (gate.old_scoring_cpu_s, charged to every method alike), the
search and the training. The race's summary counts only the total; this splits it.

    .venv/bin/python scripts/compute_split.py runs/fleet-strengths-mild > docs/results/fleet-strengths-mild/compute-split.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Iterator


def race_runs(race: Path) -> Iterator[tuple[str, str, Path, dict]]:
    """(method, seed, record path, record) for every run of every rollout under a race's --out folder."""
    for record in sorted(race.glob("seed*/*/rollout/runs/*/relora.json")):
        yield record.parts[-5], record.parts[-6].removeprefix("seed"), record, json.loads(record.read_text())


def split(race: Path) -> dict:
    """{method: {seed: {cpu_s, old_scoring_cpu_s, search_s, train_s, runs}}} from every run of every rollout."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method, seed, _, run in race_runs(race):
        cell = out.setdefault(method, {}).setdefault(seed, {"cpu_s": 0.0, "old_scoring_cpu_s": 0.0, "search_s": 0.0,
                                                              "train_s": 0.0, "runs": 0})
        cell["cpu_s"] += run["cpu_s"] or 0.0
        cell["old_scoring_cpu_s"] += (run.get("gate") or {}).get("old_scoring_cpu_s", 0.0)
        cell["search_s"] += run.get("search_s") or 0.0
        cell["train_s"] += run.get("train_s") or 0.0
        cell["runs"] += 1
    return out


def print_for_race_folder(script: str, figures: Callable[[Path], dict]) -> None:
    """The scripts' command line: one race's --out folder in, its figures out as JSON; anything else exits 2."""
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print(f"{script}: error: {' '.join(sys.argv[1:]) or 'no folder given'}: give one race's --out folder, holding "
              "seed*/METHOD/rollout", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(figures(Path(sys.argv[1])), indent=1, sort_keys=True))


if __name__ == "__main__":
    print_for_race_folder("compute_split.py", split)
