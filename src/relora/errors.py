"""One error type for bad input: the CLI prints it as one line and exits 2."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: names the file and how to fix it."""

    def __init__(self, path: str | Path | None, problem: str, fix: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}; fix: {fix}")


class TrainingDiverged(Exception):
    """Loss became NaN or inf; nothing is kept."""


class RolloutStopped(Exception):
    """The output root cannot be written: every worker stops, the ledger stays truthful."""
