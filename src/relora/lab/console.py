"""What `relora demo` shows: one overall progress line, and no third-party noise on the terminal.

Warnings a user cannot act on (transformers' deprecations, BoTorch's optimizer notes) and the
libraries' own progress bars go to a log file in the output directory instead of scrolling
past the summary.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

from tqdm.auto import tqdm


def quiet_third_party(log_file: Path) -> None:
    """Route Python warnings and transformers' log to log_file; turn off the libraries' progress bars."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each distinct warning once, into the log
    for name in ("py.warnings", "transformers", "peft", "botorch", "optuna"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.disable_default_handler()


class StageBar:
    """One line for a whole run: the current stage's name, the share done (stages weighted by their
    expected seconds, so the ETA means something), and tqdm's estimate of the time left. While a stage
    runs, whatever else writes to stderr (a library's own progress bar) goes to log_file."""

    def __init__(self, expected_s: dict[str, float], enabled: bool = True, log_file: Path | None = None) -> None:
        self.expected_s, self.log_file = expected_s, log_file
        self.bar = tqdm(total=round(sum(expected_s.values())), disable=not enabled, unit="s", leave=False,
                        file=sys.stderr, bar_format="{desc}: {percentage:3.0f}%|{bar:20}| elapsed {elapsed}, ETA {remaining}")

    @contextmanager
    def stage(self, name: str, weight_key: str | None = None) -> Iterator[None]:
        self.bar.set_description_str(name)
        if self.log_file is None:
            yield
        else:
            with self.log_file.open("a") as log, redirect_stderr(log):
                yield
        self.bar.update(round(self.expected_s.get(weight_key or name, 0.0)))

    def close(self) -> None:
        self.bar.close()
