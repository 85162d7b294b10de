"""The rollout ledger: one row per adapter in a real database (SQLAlchemy).

SQLite by default; a PostgreSQL URL works unchanged. Every state change is
its own committed transaction. Workers claim rows with one conditional
UPDATE, so two rollouts on one ledger cooperate instead of colliding, and a
row left `running` by a dead process is reclaimed once its lease expires.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (Column, Float, Integer, MetaData, String, Table, Text, create_engine, insert, inspect, select,
                        update)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, OperationalError, ProgrammingError

from relora.errors import InputError, cannot_write, stopped

STATES = ("pending", "running", "ready", "below-threshold", "failed")
FINAL = ("ready", "below-threshold", "failed")

metadata = MetaData()
adapters = Table(
    "adapters", metadata,
    Column("name", String(200), primary_key=True),
    Column("state", String(20), nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(200)),
    Column("pid", Integer),  # the process running the job, for operators (and fault tests)
    Column("lease_until", Float),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("method", String(40)),
    Column("threshold", Float),
    Column("search_s", Float),
    Column("train_s", Float),
    Column("total_s", Float),
    Column("time_to_ready_s", Float),
    Column("alpha", Float),
    Column("beta", Float),
    Column("val_accuracy", Float),
    Column("test_accuracy", Float),
    Column("old_service_val_accuracy", Float),  # old base + old adapter: quality before the update
    Column("fallback_val_accuracy", Float),  # new base + old adapter (PortLLM): what serves if not ready
    Column("negative_flip_rate", Float),
    Column("steps", Integer),  # training steps taken (0: ready from the searched init)
    Column("probes", Integer),  # search probes scored
    Column("known_earlier", Integer),  # earlier searches' points on this base update that seeded its search
    Column("judged_on", String(20)),  # "gate set" (validation examples no probe scored) or "D_val"
    Column("gate_examples", Integer),  # how many examples judged readiness, the gate, flips and the old service
    Column("gate_test", Text),  # the readiness test, named (relora.core.math.gate)
    Column("gate_alpha", Float),  # per service, over all looks
    Column("gate_margin", Float),
    Column("gate_looks", Integer),  # confirmations taken on the gate set
    Column("gate_lower", Float),  # the last look's lower bound on the mean difference (accuracy, absolute gates)
    Column("gate_verdict", String(20)),  # published, not certified, no look
    Column("gate_examples_scored", Integer),
    Column("gate_rejects", Integer),  # looks that rejected their checkpoint
    Column("gate_reject_examples", Integer),  # the gate examples those looks scored
    Column("certifiable_margin", Float),  # the smallest margin the gate certifies with 80% power
    Column("discordance", Float),  # the share of gate pairs the looks found discordant
    Column("old_service_test_accuracy", Float),
    Column("test_diff", Float),  # new - old on the test split, which no search, screen or gate scored
    Column("test_upper", Float),  # its 95% upper bound: below -margin is a false publish
    Column("retention", Float),  # the update kept: 1 as PortLLM, 0 reverted; None without an update probe
    Column("cpu_s", Float),  # CPU seconds (all threads) of the search and training
    Column("examples_scored", Integer),  # the same compute counted (relora.json's work): forward-only examples
    Column("train_tokens", Integer),  # and the tokens through forward and backward
    Column("device", Text),  # where the job ran: torch device, visible and assigned GPUs
    Column("preflight", Text),  # each preflight engine's verdict on the new adapter (relora preflight)
    Column("output_path", Text),
    Column("error", Text),
    # what the row was made from: sha256 over its inputs' contents (both bases, the adapter, the data, the
    # update probe) and the config that shapes its result; a rollout redoes a row whose inputs changed
    Column("inputs_key", String(64)),
    Column("inputs", Text),  # those contents' hashes, as JSON, for the reader
)


def masked(url: str) -> str:
    """The URL as it may be printed: SQLAlchemy's own rendering with the password hidden, or, for a URL
    SQLAlchemy cannot parse, everything between :// and @ replaced."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any unparseable URL is masked by hand below
        return re.sub(r"(://)[^@/]*@", r"\1***@", url)


class Ledger:
    def __init__(self, url: str) -> None:
        sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 60} if sqlite else {"connect_timeout": 10}}
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise InputError(masked(url), f"is not a database URL ({exc.__class__.__name__})",
                             "write a SQLAlchemy URL, e.g. sqlite:///rollout/ledger.sqlite3 or "
                             "postgresql+psycopg://user@host/db") from exc
        database = self.engine.url.database if sqlite else None
        if database and database != ":memory:" and not Path(database).resolve().parent.is_dir():
            # SQLite would say "unable to open database file", which reads as a full disk
            raise InputError(masked(url), f"the ledger's directory {Path(database).parent} does not exist",
                             "create it, or point ledger: at an existing directory")
        try:
            self._create_table()
        except DBAPIError as exc:
            if cannot_write(exc):
                raise stopped(self.engine.url.render_as_string(hide_password=True), exc) from exc
            reason = str(exc.orig).strip().splitlines()[0][:160] if exc.orig else exc.__class__.__name__
            raise InputError(self.engine.url.render_as_string(hide_password=True), f"cannot open the ledger ({reason})",
                             "start the database server or fix the ledger: URL") from exc

    def _create_table(self) -> None:
        try:
            metadata.create_all(self.engine)
        except (OperationalError, ProgrammingError, IntegrityError):
            # Another process created it between check and create (SQLite says "already exists";
            # PostgreSQL raises a unique violation on its catalog). Anything else is real.
            if not inspect(self.engine).has_table("adapters"):
                raise
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """A ledger written by an older relora lacks newer columns (e.g. device): add them, empty."""
        present = {c["name"] for c in inspect(self.engine).get_columns("adapters")}
        for column in adapters.columns:
            if column.name not in present:
                try:
                    with self._tx() as conn:
                        conn.exec_driver_sql(f"ALTER TABLE adapters ADD COLUMN {column.name} "
                                             f"{column.type.compile(self.engine.dialect)}")
                except (OperationalError, ProgrammingError):  # another process added it first
                    if column.name not in {c["name"] for c in inspect(self.engine).get_columns("adapters")}:
                        raise

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._unwritable_stops():
            with self.engine.begin() as conn:  # commits on exit: every change is durable at once
                yield conn

    @contextmanager
    def _unwritable_stops(self) -> Iterator[None]:
        """A ledger that turns unwritable mid-run (a full disk, chattr +i, a read-only remount) stops the rollout
        in one line naming the ledger (RolloutStopped, exit 3); any other database error is left as it is."""
        try:
            yield
        except DBAPIError as exc:
            cause = cannot_write(exc)
            if cause is None:
                raise
            raise stopped(f"ledger {self.engine.url.render_as_string(hide_password=True)}", cause) from exc

    def register(self, names: list[str], methods: dict[str, str], thresholds: dict[str, float | None],
                 inputs: dict[str, tuple[str, str]]) -> list[str]:
        """Add rows for adapters the ledger has not seen, with their inputs' key (and hashes, as JSON); existing
        rows keep their state unless they were made from other inputs (a changed new_base, a retrained old
        adapter): those go back to pending, to be redone. Returns the names sent back. One transaction per row:
        two rollouts starting together may both try to add it."""
        with self._tx() as conn:
            known = {name: key for name, key in conn.execute(select(adapters.c.name, adapters.c.inputs_key))}
        redo = [n for n in names if n in known and known[n] != inputs[n][0]]
        for name in names:
            if name in known:
                continue
            try:
                with self._tx() as conn:
                    conn.execute(insert(adapters).values(name=name, state="pending", attempts=0,
                                                         method=methods[name], threshold=thresholds[name],
                                                         inputs_key=inputs[name][0], inputs=inputs[name][1]))
            except IntegrityError:
                pass  # the other rollout added it first; its row stands
        for name in redo:
            with self._tx() as conn:
                conn.execute(update(adapters).where((adapters.c.name == name) & (adapters.c.state != "running"))
                             .values(state="pending", attempts=0, output_path=None, method=methods[name],
                                     threshold=thresholds[name], inputs_key=inputs[name][0], inputs=inputs[name][1],
                                     error="inputs changed since this row was made: redone"))
        return redo

    def claim(self, name: str, worker: str, lease_s: float, retry_failed: bool = False) -> bool:
        """Atomically take a row that is pending, failed (if asked), expired, or already ours."""
        now = time.time()
        claimable = (adapters.c.state == "pending") | (
            (adapters.c.state == "running") & ((adapters.c.lease_until < now) | (adapters.c.worker == worker)))
        if retry_failed:
            claimable = claimable | (adapters.c.state == "failed")
        with self._tx() as conn:
            result = conn.execute(
                update(adapters).where((adapters.c.name == name) & claimable).values(
                    state="running", worker=worker, pid=os.getpid(), attempts=adapters.c.attempts + 1,
                    lease_until=now + lease_s,
                    started_at=now, ended_at=None, error=None))
            return result.rowcount == 1

    def release_dead(self, host: str, alive: Callable[[int], bool]) -> list[str]:
        """Rows left running by processes of this host that no longer exist go back to pending at once,
        instead of waiting out their lease (a full disk or kill -9 ended them); returns their names."""
        with self._tx() as conn:
            rows = conn.execute(select(adapters.c.name, adapters.c.worker, adapters.c.pid)
                                .where(adapters.c.state == "running")).all()
            dead = [r.name for r in rows if (r.worker or "").startswith(f"{host}:") and r.pid and not alive(r.pid)]
            for name in dead:
                conn.execute(update(adapters).where((adapters.c.name == name) & (adapters.c.state == "running"))
                             .values(state="pending", lease_until=None, error="its process died; released"))
        return dead

    def release_worker(self, worker: str, note: str) -> list[str]:
        """Rows this worker still holds go back to pending (a stop signal caught it between claiming a row
        and starting the job); returns their names."""
        with self._tx() as conn:
            held = list(conn.execute(select(adapters.c.name).where(
                (adapters.c.worker == worker) & (adapters.c.state == "running"))).scalars())
            for name in held:
                conn.execute(update(adapters).where((adapters.c.name == name) & (adapters.c.state == "running"))
                             .values(state="pending", lease_until=None, ended_at=time.time(), error=note))
        return held

    def heartbeat(self, name: str, worker: str, lease_s: float) -> None:
        with self._tx() as conn:
            conn.execute(update(adapters).where((adapters.c.name == name) & (adapters.c.worker == worker)
                                                & (adapters.c.state == "running"))
                         .values(lease_until=time.time() + lease_s))

    def finish(self, name: str, worker: str, state: str, **fields: Any) -> None:
        assert state in STATES
        with self._tx() as conn:
            conn.execute(update(adapters).where((adapters.c.name == name) & (adapters.c.worker == worker))
                         .values(state=state, ended_at=time.time(), lease_until=None, **fields))

    def rows(self) -> list[dict[str, Any]]:
        with self._unwritable_stops(), self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(adapters).order_by(adapters.c.name))]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for row in self.rows():
            counts[row["state"]] += 1
        return counts
