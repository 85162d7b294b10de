"""Regenerate the key table in docs/configuration.md from the config models' field descriptions.
    .venv/bin/python scripts/config_table.py"""

from pathlib import Path

from config_doc import write

page = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
print(f"{page}: {'updated' if write(page) else 'already current'}")
