"""Known good points for a base update: where earlier searches on the same base pair ended.

Keyed by both bases' content hashes, so in a fleet the first adapters' searches seed the rest,
and a re-run of a bench seeds its later seeds. The revert point (-1, 1), which undoes the base
update in the adapted modules, is always known: our searches kept ending near it.
"""

from __future__ import annotations

import json
from pathlib import Path

from relora.io import atomic_write

REVERT = (-1.0, 1.0)
KEEP = 2  # earlier best points offered to a new search


def _index(cache: Path) -> Path:
    return cache / "searches" / "known-points.json"


def known_points(cache: Path, old_hash: str, new_hash: str) -> list[tuple[float, float]]:
    """The revert point, then the best points of the latest earlier searches on this base pair."""
    path = _index(cache)
    table = json.loads(path.read_text()) if path.is_file() else {}
    earlier = [tuple(p) for p in table.get(f"{old_hash}:{new_hash}", [])][-KEEP:][::-1]
    return [REVERT] + [p for p in earlier if p != REVERT]


def remember(cache: Path, old_hash: str, new_hash: str, best: tuple[float, float]) -> None:
    path = _index(cache)
    table = json.loads(path.read_text()) if path.is_file() else {}
    points = [p for p in table.get(f"{old_hash}:{new_hash}", []) if tuple(p) != best] + [list(best)]
    table[f"{old_hash}:{new_hash}"] = points[-10:]
    atomic_write(path, json.dumps(table, indent=1))
