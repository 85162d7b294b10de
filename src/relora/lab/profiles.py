"""The lab's bench and race profiles, read from the repository's configs/ folder: YAML a user can read and copy,
each headed by the command that runs it (a test checks both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml

from relora.errors import InputError

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
T = TypeVar("T")


def as_tuples(value: Any) -> Any:
    """YAML's lists as the frozen profiles' tuples (mappings stay mappings)."""
    if isinstance(value, list):
        return tuple(as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: as_tuples(v) for k, v in value.items()}
    return value


def load_profiles(kind: str, cls: type[T], root: Path = CONFIGS) -> dict[str, T]:
    """Every configs/<kind>/<name>.yaml as a cls, by name."""
    folder = root / kind
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise InputError(folder, "holds no lab profiles", "run the lab from a clone of the relora repository, "
                                                          "whose configs/ folder holds them")
    profiles = {}
    for path in files:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(tree, dict) or tree.get("name") != path.stem:
            raise InputError(path, "is not a profile named after its file", f"set name: {path.stem}")
        try:
            profiles[path.stem] = cls(**as_tuples(tree))
        except TypeError as exc:
            raise InputError(path, f"is not a {cls.__name__} ({exc})", "use the keys the other profiles use") from None
    return profiles


def profile_names(kind: str, root: Path = CONFIGS) -> tuple[str, ...]:
    """The profiles' names, for the command line's choices (read without loading anything heavy)."""
    return tuple(sorted(p.stem for p in (root / kind).glob("*.yaml")))
