"""Mean ± std and Markdown tables: the one way every report in relora writes them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std of the known values (std 0 for one value, None for none)."""
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    return statistics.fmean(known), statistics.stdev(known) if len(known) > 1 else 0.0


def markdown_head(*columns: str) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def markdown_row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_table(rows: list[list[str]]) -> str:
    """The first row is the header."""
    head, *body = rows
    return "\n".join(markdown_head(*head) + [markdown_row(*row) for row in body])
