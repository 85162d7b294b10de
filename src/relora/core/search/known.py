"""Known good points for a base update: where earlier searches on the same base pair ended.

Keyed by both bases' content hashes, so in a fleet the first adapters' searches seed the rest,
and a bench's first seed seeds its later ones. Each point names the adapter it was found for, so an
adapter's own earlier search never seeds it (that would be its answer, not a prior). The revert point (-1, 1), which undoes the base
update in the adapted modules, is always known: our searches kept ending near it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relora.io import atomic_write

REVERT = (-1.0, 1.0)
KEEP = 2  # earlier best points offered to a new search


def _index(cache: Path) -> Path:
    return cache / "searches" / "known-points.json"


def _table(cache: Path) -> dict[str, Any]:
    path = _index(cache)
    return json.loads(path.read_text()) if path.is_file() else {}


def _entries(table: dict[str, Any], old_hash: str, new_hash: str) -> list[dict[str, Any]]:
    # entries written before adapters were recorded were bare [alpha, beta] pairs
    return [e if isinstance(e, dict) else {"point": e, "adapter": None} for e in table.get(f"{old_hash}:{new_hash}", [])]


def known_points(cache: Path, old_hash: str, new_hash: str, adapter: str | None = None) -> list[tuple[float, float]]:
    """The revert point, then the best points of the latest earlier searches on this base pair for other
    adapters (a re-run of the same adapter must not start from its own answer)."""
    earlier = [tuple(e["point"]) for e in _entries(_table(cache), old_hash, new_hash) if adapter is None or e["adapter"] != adapter]
    return [REVERT] + [p for p in earlier[-KEEP:][::-1] if p != REVERT]  # type: ignore[misc]


def remember(cache: Path, old_hash: str, new_hash: str, best: tuple[float, float], adapter: str | None = None) -> None:
    table = _table(cache)
    entries = [e for e in _entries(table, old_hash, new_hash) if (tuple(e["point"]), e["adapter"]) != (best, adapter)]
    table[f"{old_hash}:{new_hash}"] = [*entries, {"point": list(best), "adapter": adapter}][-10:]
    atomic_write(_index(cache), json.dumps(table, indent=1))
