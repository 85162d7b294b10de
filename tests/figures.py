"""What the figure tests share: where the docs and their results files are, how a results file is read, and
how a figure is found in its page (test_docs_figures.py: the races, strengths and gates; test_docs_bench_figures.py:
the benches, the demo and performance)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
README, RESULTS_README = ROOT / "README.md", RESULTS / "README.md"
ARCHIVE_README = RESULTS / "archive" / "README.md"
METHOD_DOC = ROOT / "docs" / "method.md"
PERFORMANCE = ROOT / "docs" / "performance.md"


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def quoted(doc: Path, phrase: str) -> None:
    text = " ".join(doc.read_text().split())  # line breaks in the page do not matter
    assert phrase in text, f"{doc.relative_to(ROOT)} does not say {phrase!r} (what its results file gives)"
