"""Probe history in an Optuna study (SQLite), and a file lock so one search runs per store.

A killed search resumes where it stopped, and two fleet workers with identical
inputs never interleave probes: the second waits and reuses the history.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

from relora.core.model.config import SearchConfig
from relora.core.method.measures import Probe, Proposal, Score, as_score

optuna.logging.set_verbosity(logging.WARNING)


class ProbeStore:
    """Completed probes in an Optuna study; in memory when no path is given."""

    def __init__(self, path: Path | None, cfg: SearchConfig) -> None:
        storage = f"sqlite:///{path}" if path is not None else None
        self.study = optuna.create_study(study_name="relora-search", storage=storage,
                                         direction="minimize", load_if_exists=True)
        self.dists = {
            "alpha": optuna.distributions.FloatDistribution(*cfg.alpha_bounds),
            "beta": optuna.distributions.FloatDistribution(*cfg.beta_bounds),
        }

    def completed(self) -> list[Probe]:
        done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        probes = []
        for t in done:
            attrs = dict(t.user_attrs)
            if attrs.get("gp_state") is not None:
                attrs["gp_state"] = tuple(attrs["gp_state"])
            probes.append(Probe(t.params["alpha"], t.params["beta"], float(t.value), **attrs))
        return probes

    def record(self, alpha: float, beta: float, n: int, run: Callable[[], Score], stage: str = "explore",
               proposal: Proposal | None = None) -> Probe:
        self.study.enqueue_trial({"alpha": alpha, "beta": beta})
        trial = self.study.ask(self.dists)
        start = time.perf_counter()
        try:
            loss, accuracy = as_score(run())
        except BaseException:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        probe = Probe(alpha, beta, loss, proposal.seconds if proposal else 0.0, time.perf_counter() - start, n,
                      stage, proposal.log_ei if proposal else None, proposal.gp_state if proposal else None, accuracy)
        for key, value in probe.as_dict().items():
            if key not in ("alpha", "beta", "val_loss"):
                trial.set_user_attr(key, value)
        self.study.tell(trial, loss)
        return probe


@contextmanager
def exclusive(store_path: Path | None) -> Iterator[None]:
    """One search per store at a time, across processes: a second rollout worker with the
    same inputs waits, then finds the finished history and probes nothing."""
    if store_path is None:
        yield
        return
    with open(store_path.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


