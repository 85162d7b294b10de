"""The search strategies by name, as methods.py registers methods: a new search is a file with a SearchStrategy
and one line here."""

from __future__ import annotations

from relora.core.method.search.bo import BoSearch
from relora.core.method.search.grid import GridSearch
from relora.core.method.search.per_group import GradientSearch
from relora.core.method.search.strategy import SearchStrategy

SEARCHES: dict[str, SearchStrategy] = {s.name: s for s in (BoSearch(), GridSearch(), GradientSearch())}


def search_for(name: str) -> SearchStrategy:
    """The registered strategy, or a ValueError that lists the registry."""
    if name not in SEARCHES:
        raise ValueError(f"unknown search strategy {name!r}; choose from {', '.join(SEARCHES)}")
    return SEARCHES[name]
