"""The configuration key table of docs/configuration.md, generated from the config models' field
descriptions (scripts/config_table.py writes it; a test keeps the committed page current)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from relora.core.model.config import ReadaptConfig

BEGIN = "<!-- keys: generated from the field descriptions in src/relora/core/model/config.py by scripts/config_table.py -->"
END = "<!-- end of keys -->"


def _default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def key_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every leaf key; nested models are walked."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            rows += key_rows(kind, f"{prefix}{name}.")
            continue
        if not field.description:
            raise ValueError(f"{model.__name__}.{name} has no description; add one in src/relora/core/model/config.py")
        rows.append((f"{prefix}{name}", _default(field.default), field.description))
    return rows


def key_table() -> str:
    lines = ["| key | default | what it does |", "|---|---|---|"]
    for key, default, text in key_rows(ReadaptConfig):
        cells = [f"`{key}`", default, text]
        lines.append("| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |")
    return "\n".join(lines)


def render(page: str) -> str:
    """The page with its generated block replaced by the current table."""
    if BEGIN not in page or END not in page:
        raise ValueError(f"the page has no generated block ({BEGIN} ... {END})")
    head, rest = page.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{BEGIN}\n{key_table()}\n{END}{tail}"


def write(path: Path) -> bool:
    """Regenerate the page's table; True when it changed."""
    before = path.read_text()
    after = render(before)
    if after != before:
        path.write_text(after)
    return after != before
