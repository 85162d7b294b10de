"""Known good points for a base update: where earlier searches of one method on the same base pair ended.

Keyed by the method and both bases' content hashes, so in a fleet the first adapters' searches seed
the rest, and no method starts from another method's answer without paying for its search. Each
point names the adapter it was found for, so an adapter's own earlier search never seeds it (that
would be its answer, not a prior). Only points that were evaluated are stored: a global (alpha, beta)
pair, or the per-group coefficients the gradient strategy learned and kept. The revert point (-1, 1),
which undoes the base update in the adapted modules, is always known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relora.io import atomic_write, read_memo

REVERT = (-1.0, 1.0)
KEEP = 2  # earlier best points offered to a new search


@dataclass(frozen=True)
class KnownPoint:
    """An evaluated end point of an earlier search: one pair, or one pair per group of modules."""

    point: tuple[float, float] | None = None
    groups: dict[str, tuple[float, float]] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"point": list(self.point) if self.point else None,
                "groups": {g: list(c) for g, c in self.groups.items()} if self.groups else None}


def _index(cache: Path) -> Path:
    return cache / "searches" / "known-points.json"


def _table(cache: Path) -> dict[str, Any]:
    return read_memo(_index(cache), dict)  # a damaged index only costs later searches their seeds


def _key(method: str, old_hash: str, new_hash: str) -> str:
    return f"{method}|{old_hash}:{new_hash}"


def _parse(entry: dict[str, Any]) -> KnownPoint:
    groups = entry.get("groups")
    return KnownPoint(tuple(entry["point"]) if entry.get("point") else None,  # type: ignore[arg-type]
                      {g: tuple(c) for g, c in groups.items()} if groups else None)  # type: ignore[misc]


def earlier(cache: Path, method: str, old_hash: str, new_hash: str, adapter: str | None = None) -> list[KnownPoint]:
    """The latest earlier searches of this method on this base pair for other adapters, newest first."""
    entries = _table(cache).get(_key(method, old_hash, new_hash), [])
    found = [_parse(e) for e in entries if isinstance(e, dict) and (adapter is None or e.get("adapter") != adapter)]
    return found[-KEEP:][::-1]


def design_points(found: list[KnownPoint]) -> list[tuple[float, float]]:
    """The revert point, then the global (alpha, beta) end points among earlier searches' (for a design)."""
    return [REVERT] + [k.point for k in found if k.point is not None and k.point != REVERT]


def known_points(cache: Path, method: str, old_hash: str, new_hash: str,
                 adapter: str | None = None) -> list[tuple[float, float]]:
    """The revert point, then the global (alpha, beta) end points of this method's earlier searches."""
    return design_points(earlier(cache, method, old_hash, new_hash, adapter))


def remember(cache: Path, method: str, old_hash: str, new_hash: str, best: KnownPoint,
             adapter: str | None = None) -> None:
    table = _table(cache)
    key = _key(method, old_hash, new_hash)
    entry = best.as_json() | {"adapter": adapter}
    entries = [e for e in table.get(key, []) if isinstance(e, dict) and e != entry]
    table[key] = [*entries, entry][-10:]
    atomic_write(_index(cache), json.dumps(table, indent=1))
