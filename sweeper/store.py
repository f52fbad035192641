"""The results store: the single source of truth for studies and trials.

Every state change is a compare-and-set inside one transaction (`_tx`) that reports whether it
won. On SQLite a write transaction starts with ``BEGIN IMMEDIATE`` so that two processes claiming
at once serialise instead of both reading the same queued rows; on PostgreSQL claims lock rows
with ``FOR UPDATE SKIP LOCKED``. A running trial holds a lease that its worker's heartbeat
renews; a trial whose lease ran out is put back in the queue by the next claim, so a trial whose
worker died is never stuck. ORM rows never leave this module: callers get frozen dataclasses
and pandas DataFrames.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Float,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from sweeper.errors import (
    SchemaVersionError,
    StoreError,
    StudyConflictError,
    UnknownStudyError,
)
from sweeper.plan import PlannedTrial, canonical_json
from sweeper.schema import (
    SCHEMA_VERSION,
    STATES,
    Base,
    MetaRow,
    ProposalRow,
    StudyRow,
    TrialRow,
)
from sweeper.search import NewProposal, Proposal, TrialResult
from sweeper.study import Study, conflicting_keys
from sweeper.tasks.base import TrialInput, TrialOutcome

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_DB = "results.db"
DEFAULT_LEASE_S = 30.0


def resolve_url(db: str | None) -> str:
    """The database URL: `db` (flag), else ``SWEEPER_DB``, else ``results.db`` here.

    A plain path (no ``://``) means a SQLite file.
    """
    raw = db or os.environ.get("SWEEPER_DB") or DEFAULT_DB
    return raw if "://" in raw else f"sqlite:///{raw}"


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


@dataclass(frozen=True)
class WorkerId:
    """Who holds a claim: a unique token plus the host and process, for people and for checks."""

    token: str
    host: str
    pid: int

    @classmethod
    def here(cls) -> WorkerId:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}:{pid}:{os.urandom(4).hex()}", host, pid)


@dataclass(frozen=True)
class StudyInfo:
    id: int
    study: Study
    created_at: float
    updated_at: float

    @property
    def name(self) -> str:
        return self.study.name


@dataclass(frozen=True)
class StudySummary:
    name: str
    task: str
    kind: str
    metric: str
    direction: str
    counts: dict[str, int]
    best: float | None
    updated_at: float


@dataclass(frozen=True)
class StudyStats:
    """What `sweeper status` shows, computed by the database (no per-trial JSON parsing)."""

    counts: dict[str, int]
    best: float | None
    mean_duration: float | None
    first_start: float | None
    last_finish: float | None
    running: list[tuple[int, str | None, int | None]]  # id, host, pid (the first ten)
    failed: list[tuple[int, int, str | None]]  # id, attempts, error (the first five)


@dataclass(frozen=True)
class EnqueueReport:
    study_id: int
    added: int
    total: int
    created: bool


class Store:
    """Open (and, if `create`, initialise) the database at `url`.

    Raises:
        StoreError: the database does not exist (and `create` is false), cannot be read, or is
            not a sweeper database.
        SchemaVersionError: it was written by a sweeper with another schema version.
    """

    def __init__(self, url: str, *, create: bool = False) -> None:
        self.url = url
        self.engine = _engine(url, create=create)
        # SQLite connections the claim/record path keeps per thread (see `_tx`), for `close`.
        self._kept = threading.local()
        self._kept_all: list[Connection] = []
        self._kept_lock = threading.Lock()
        self._has_proposals = False  # set by `_proposals` once the table is seen
        try:
            self._init_schema(create)
        except DBAPIError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot read database {safe_url(url)}: {_reason(exc)}") from exc
        except StoreError:
            self.engine.dispose()
            raise

    def close(self) -> None:
        with self._kept_lock:
            kept, self._kept_all = self._kept_all, []
        for conn in kept:
            conn.close()
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------------

    def _init_schema(self, create: bool) -> None:
        tables = set(inspect(self.engine).get_table_names())
        if MetaRow.__tablename__ not in tables:
            if not create:
                if tables:
                    raise StoreError(
                        f"{safe_url(self.url)} is not a sweeper database (no sweeper_meta table)"
                    )
                raise StoreError(
                    f"no sweeper database at {safe_url(self.url)}: run `sweeper run STUDY_FILE` "
                    "first, or point --db / SWEEPER_DB at one"
                )
            with self._tx() as conn:
                Base.metadata.create_all(conn)
                exists = conn.scalar(select(MetaRow.value).where(MetaRow.key == "schema_version"))
                if exists is None:
                    conn.execute(
                        _insert(conn, MetaRow).values(
                            key="schema_version", value=str(SCHEMA_VERSION)
                        )
                    )
        with self._tx(write=False) as conn:
            found = conn.scalar(select(MetaRow.value).where(MetaRow.key == "schema_version"))
        if create and found == str(SCHEMA_VERSION) and ProposalRow.__tablename__ not in tables:
            # A database from before searched studies: add the table they need.
            with self._tx() as conn:
                Base.metadata.create_all(conn)
        if found != str(SCHEMA_VERSION):
            raise SchemaVersionError(
                f"database {safe_url(self.url)} has schema version {found}, but this sweeper "
                f"reads version {SCHEMA_VERSION}: use the sweeper release that wrote it, or "
                "start a new database with --db"
            )

    @contextmanager
    def _tx(self, *, write: bool = True, keep: bool = False) -> Iterator[Connection]:
        """One transaction; on SQLite a write transaction takes the write lock at BEGIN.

        With `keep` (claim and record), a SQLite connection stays with the calling thread
        between transactions: a pool check-out and check-in cost a sixth of a claim-and-record
        cycle (bench/orchestrator.py). PostgreSQL connections always go back to the pool, whose
        pre-ping survives a server restart.
        """
        kept = self._kept_connection() if keep else None
        conn = kept or self.engine.connect()
        try:
            if conn.get_execution_options().get("sweeper_write") is not write:
                conn.execution_options(sweeper_write=write)
            with conn.begin():
                yield conn
        finally:
            if conn is not kept:
                conn.close()

    def _kept_connection(self) -> Connection | None:
        """This thread's kept SQLite connection, made on first use; None on PostgreSQL, or
        while the kept one is inside a transaction (a nested `_tx`)."""
        if self.engine.dialect.name != "sqlite":
            return None
        conn: Connection | None = getattr(self._kept, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._kept.conn = self.engine.connect()
            with self._kept_lock:
                self._kept_all.append(conn)
        return None if conn.in_transaction() else conn

    # -- studies ------------------------------------------------------------------------------

    def save_study(self, study: Study, plan: Sequence[PlannedTrial]) -> EnqueueReport:
        """Create the study or extend it, and enqueue every planned trial not yet stored.

        Enqueueing is idempotent: a trial whose key the study already holds is left alone
        (whatever its state). Axis values and seeds of an earlier run are kept in the stored
        study, so a study only grows.

        Raises:
            StudyConflictError: a study of that name exists with another task or other fixed
                parameters; nothing is written.
        """
        now = time.time()
        with self._tx() as conn:
            row = conn.execute(select(StudyRow).where(StudyRow.name == study.name)).first()
            created = row is None
            if row is None:
                merged = study
                study_id = conn.execute(
                    _insert(conn, StudyRow)
                    .values(
                        name=study.name,
                        task=study.task,
                        kind=study.kind,
                        metric=study.metric,
                        direction=study.direction,
                        config=merged.to_json(),
                        source=study.source,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(StudyRow.id)
                ).scalar_one()
            else:
                old = Study.from_json(row.config)
                study_id = row.id
                changed = conflicting_keys(old, study)
                if changed:
                    raise StudyConflictError(
                        f"study {study.name!r} already exists with a different "
                        f"{', '.join(changed)}; changing {'it' if len(changed) == 1 else 'them'} "
                        "would change the meaning of its stored trials: give the study a new "
                        "name to keep both"
                    )
                merged = _merge(old, study)
                conn.execute(
                    update(StudyRow)
                    .where(StudyRow.id == study_id)
                    .values(
                        kind=merged.kind,
                        metric=merged.metric,
                        direction=merged.direction,
                        config=merged.to_json(),
                        source=study.source,
                        updated_at=now,
                    )
                )
            before = conn.scalar(select(func.count()).where(TrialRow.study_id == study_id)) or 0
            _enqueue(conn, study_id, plan, now)
            after = conn.scalar(select(func.count()).where(TrialRow.study_id == study_id)) or 0
        return EnqueueReport(study_id, after - before, after, created)

    # -- searched studies ---------------------------------------------------------------------

    def proposals(self, study_id: int) -> list[Proposal]:
        """A searched study's proposals, in the order they were made."""
        with self._tx(write=False) as conn:
            return self._proposals(conn, study_id)

    def search_trials(self, study_id: int, curve: str | None = None) -> list[TrialResult]:
        """Every trial of a study as the search sees it; with `curve`, that per-epoch curve."""
        with self._tx(write=False) as conn:
            return self._search_trials(conn, study_id, curve)

    def extend_search(
        self,
        study_id: int,
        budget: int,
        want: int,
        propose: Callable[[list[Proposal], list[TrialResult]], list[NewProposal]],
        curve: str | None = None,
    ) -> int:
        """Ask for up to `want` new configurations, never past `budget`, and enqueue them.

        One write transaction (the study row locked on PostgreSQL; SQLite's write lock from
        BEGIN IMMEDIATE) holds the count, the history handed to `propose`, and the inserts, so
        workers asking at once take turns and the budget is never overshot. Returns how many
        configurations were added (0 when the budget is spent).
        """
        now = time.time()
        with self._tx() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(select(StudyRow.id).where(StudyRow.id == study_id).with_for_update())
            existing = self._proposals(conn, study_id)
            n = min(want, budget - len(existing))
            if n <= 0:
                return 0
            new = propose(existing, self._search_trials(conn, study_id, curve))[:n]
            if new:
                conn.execute(
                    _insert(conn, ProposalRow),
                    [
                        {
                            "study_id": study_id,
                            "number": len(existing) + i,
                            "params": canonical_json(p.params),
                            "raw": canonical_json(p.raw),
                            "created_at": now,
                        }
                        for i, p in enumerate(new)
                    ],
                )
                _enqueue(conn, study_id, [t for p in new for t in p.trials], now)
        return len(new)

    def prune_queued(self, study_id: int, params: str) -> int:
        """Mark the still-queued trials of one configuration (by params JSON) as pruned."""
        now = time.time()
        with self._tx() as conn:
            result = conn.execute(
                update(TrialRow)
                .where(
                    TrialRow.study_id == study_id,
                    TrialRow.params == params,
                    TrialRow.state == "queued",
                )
                .values(
                    state="pruned",
                    finished_at=now,
                    error=_append_note("pruned with its configuration before it started"),
                )
            )
        return result.rowcount

    def _proposals(self, conn: Connection, study_id: int) -> list[Proposal]:
        if not self._has_proposals:
            # A database from before searched studies, opened read-only, has no such table;
            # look again (once found, never again) in case another process has added it.
            self._has_proposals = ProposalRow.__tablename__ in inspect(conn).get_table_names()
            if not self._has_proposals:
                return []
        rows = conn.execute(
            select(ProposalRow.number, ProposalRow.params, ProposalRow.raw)
            .where(ProposalRow.study_id == study_id)
            .order_by(ProposalRow.number)
        ).all()
        return [Proposal(r[0], json.loads(r[1]), json.loads(r[2])) for r in rows]

    def _search_trials(
        self, conn: Connection, study_id: int, curve: str | None
    ) -> list[TrialResult]:
        cols = [TrialRow.params, TrialRow.seed, TrialRow.state, TrialRow.value]
        if curve is not None:
            cols.append(TrialRow.curves)
        rows: list[Any] = list(
            conn.execute(select(*cols).where(TrialRow.study_id == study_id).order_by(TrialRow.id))
        )
        out = []
        for r in rows:
            values = None
            if curve is not None and r[4]:
                values = json.loads(r[4]).get(curve)
            out.append(TrialResult(r[0], r[1], r[2], r[3], values))
        return out

    def study(self, name: str) -> StudyInfo:
        """The study called `name`.

        Raises:
            UnknownStudyError: none by that name; the message lists the known ones.
        """
        with self._tx(write=False) as conn:
            row = conn.execute(select(StudyRow).where(StudyRow.name == name)).first()
            if row is None:
                names = conn.scalars(select(StudyRow.name).order_by(StudyRow.name)).all()
        if row is None:
            known = ", ".join(names) if names else "none yet"
            raise UnknownStudyError(
                f"no study named {name!r} in {safe_url(self.url)} (studies: {known})"
            )
        return StudyInfo(
            row.id, Study.from_json(row.config, row.source), row.created_at, row.updated_at
        )

    def studies(self) -> list[StudySummary]:
        """Every study with its trial counts per state and best metric value."""
        with self._tx(write=False) as conn:
            rows = conn.execute(select(StudyRow).order_by(StudyRow.name)).all()
            count_rows = conn.execute(
                select(TrialRow.study_id, TrialRow.state, func.count()).group_by(
                    TrialRow.study_id, TrialRow.state
                )
            ).all()
            best_rows = conn.execute(
                select(TrialRow.study_id, func.min(TrialRow.value), func.max(TrialRow.value))
                .where(TrialRow.state == "completed")
                .group_by(TrialRow.study_id)
            ).all()
        counts: dict[int, dict[str, int]] = {}
        for study_id, state, n in count_rows:
            counts.setdefault(study_id, dict.fromkeys(STATES, 0))[state] = n
        best = {sid: (lo, hi) for sid, lo, hi in best_rows}
        out = []
        for r in rows:
            lo, hi = best.get(r.id, (None, None))
            out.append(
                StudySummary(
                    r.name,
                    r.task,
                    r.kind,
                    r.metric,
                    r.direction,
                    counts.get(r.id, dict.fromkeys(STATES, 0)),
                    lo if r.direction == "minimize" else hi,
                    r.updated_at,
                )
            )
        return out

    def studies_with_work(self) -> list[str]:
        """Names of studies with queued trials, or running trials whose lease has expired."""
        now = time.time()
        with self._tx(write=False) as conn:
            names = conn.scalars(
                select(StudyRow.name)
                .where(
                    select(TrialRow.id)
                    .where(
                        TrialRow.study_id == StudyRow.id,
                        (TrialRow.state == "queued")
                        | ((TrialRow.state == "running") & (TrialRow.lease_until < now)),
                    )
                    .exists()
                )
                .order_by(StudyRow.name)
            ).all()
            # Searched studies whose budget is not spent have work, queued or not.
            searched = conn.execute(
                select(StudyRow.id, StudyRow.name, StudyRow.config).where(StudyRow.kind != "grid")
            ).all()
            open_names = [
                r.name
                for r in searched
                if len(self._proposals(conn, r.id)) < (Study.from_json(r.config).budget or 0)
            ]
        return sorted(set(names) | set(open_names))

    def counts(self, study_id: int) -> dict[str, int]:
        """Trials per state (every state present)."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                select(TrialRow.state, func.count())
                .where(TrialRow.study_id == study_id)
                .group_by(TrialRow.state)
            ).all()
        counts = dict.fromkeys(STATES, 0)
        counts.update({state: n for state, n in rows})
        return counts

    def stats(self, study_id: int, direction: str) -> StudyStats:
        """Counts, timing, best value, and the first running and failed trials of a study."""
        done = (TrialRow.study_id == study_id, TrialRow.state == "completed")
        best = func.min(TrialRow.value) if direction == "minimize" else func.max(TrialRow.value)
        with self._tx(write=False) as conn:
            agg = conn.execute(
                select(
                    best,
                    func.avg(TrialRow.duration),
                    func.min(TrialRow.started_at),
                    func.max(TrialRow.finished_at),
                ).where(*done)
            ).one()
            running = conn.execute(
                select(TrialRow.id, TrialRow.host, TrialRow.pid)
                .where(TrialRow.study_id == study_id, TrialRow.state == "running")
                .order_by(TrialRow.id)
                .limit(10)
            ).all()
            failed = conn.execute(
                select(TrialRow.id, TrialRow.attempts, TrialRow.error)
                .where(TrialRow.study_id == study_id, TrialRow.state == "failed")
                .order_by(TrialRow.id)
                .limit(5)
            ).all()
        return StudyStats(
            counts=self.counts(study_id),
            best=agg[0],
            mean_duration=agg[1],
            first_start=agg[2],
            last_finish=agg[3],
            running=[(r[0], r[1], r[2]) for r in running],
            failed=[(r[0], r[1], r[2]) for r in failed],
        )

    def best_value(self, study_id: int, direction: str) -> float | None:
        agg = func.min if direction == "minimize" else func.max
        with self._tx(write=False) as conn:
            value: float | None = conn.scalar(
                select(agg(TrialRow.value)).where(
                    TrialRow.study_id == study_id, TrialRow.state == "completed"
                )
            )
        return value

    # -- the trial life cycle -----------------------------------------------------------------

    def claim(
        self,
        study_id: int,
        worker: WorkerId,
        *,
        limit: int = 1,
        share: int = 1,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> list[TrialInput]:
        """Claim up to `limit` queued trials of one batching group for `worker`.

        The group is that of the oldest queued trial. With `share` workers sharing the study,
        a worker takes at most ``ceil(group_size / share)`` (all the group's trials, in any
        state), so that a group is trained in `share` equal parts rather than in ever smaller
        leftovers. Trials whose lease expired are re-queued first.

        Returns:
            The claimed trials (empty when nothing is queued). On a lost race (another worker
            claimed a row between read and update) the row is simply not returned.
        """
        now = time.time()
        # Prepared statements with bound parameters: building and cache-keying SQLAlchemy
        # expressions on every call cost twice the SQL itself (bench/orchestrator.py).
        sql = _statements(self.engine.dialect.name)
        take = {
            "sid": study_id,
            "token": worker.token,
            "host_name": worker.host,
            "process": worker.pid,
            "now": now,
            "until": now + lease_s,
        }
        with self._tx(keep=True) as conn:
            self._requeue_expired(conn, study_id, now)
            if limit == 1:
                # One trial has no group to keep together: take the oldest queued one in the
                # statement that picks it.
                rows = conn.execute(sql.take_oldest, take).all()
            else:
                first = conn.execute(sql.oldest_group, {"sid": study_id}).first()
                if first is None:
                    return []
                group = first[0]
                if share > 1:
                    # Split the whole group evenly: the second worker takes as much as the
                    # first, and a worker coming back for the rest takes all of it, not half.
                    size = conn.scalar(sql.group_size, {"sid": study_id, "group": group}) or 0
                    limit = max(1, min(limit, math.ceil(size / share)))
                ids = list(
                    conn.scalars(sql.group_ids, {"sid": study_id, "group": group, "limit": limit})
                )
                if not ids:
                    return []
                rows = conn.execute(sql.take_ids, {**take, "ids": ids}).all()
        # Compare-and-set: RETURNING yields only the rows this statement moved to running.
        rows = sorted(rows, key=lambda r: int(r.id))
        return [TrialInput(r.id, r.key, json.loads(r.params), r.seed) for r in rows]

    def heartbeat(self, worker: WorkerId, lease_s: float = DEFAULT_LEASE_S) -> int:
        """Extend the lease of every trial `worker` is running. Returns how many."""
        with self._tx() as conn:
            result = conn.execute(
                update(TrialRow)
                .where(TrialRow.worker == worker.token, TrialRow.state == "running")
                .values(lease_until=time.time() + lease_s)
            )
        return result.rowcount

    def record(
        self,
        worker: WorkerId,
        outcomes: Sequence[TrialOutcome],
        metric: str,
        torch_version: str | None = None,
    ) -> int:
        """Store finished trials: completed, or failed when `outcome.error` is set.

        Only trials still running under `worker` are written (compare-and-set), so a worker
        that lost its lease cannot overwrite the trial's new owner. Returns how many were written.
        """
        now = time.time()
        written = 0
        sql = _statements(self.engine.dialect.name)
        with self._tx(keep=True) as conn:
            for out in outcomes:
                value = out.metrics.get(metric) if out.error is None and not out.pruned else None
                state = "failed" if out.error is not None else "completed"
                values: dict[str, Any] = {
                    "trial_id": out.trial_id,
                    "token": worker.token,
                    "outcome": "pruned" if out.pruned and out.error is None else state,
                    "now": now,
                    "metric_value": value if value is not None and math.isfinite(value) else None,
                    "metrics_json": json.dumps(out.metrics) if out.metrics else None,
                    "curves_json": json.dumps(out.curves) if out.curves else None,
                    "torch": torch_version,
                }
                if out.error is not None:
                    values["error_text"] = out.error
                result = conn.execute(sql.record if out.error is None else sql.record_error, values)
                written += result.rowcount
        return written

    def release(self, worker: WorkerId, trial_ids: Sequence[int]) -> int:
        """Put trials `worker` was running back in the queue (on Ctrl-C): not an attempt."""
        if not trial_ids:
            return 0
        with self._tx() as conn:
            result = conn.execute(
                update(TrialRow)
                .where(
                    TrialRow.id.in_(list(trial_ids)),
                    TrialRow.state == "running",
                    TrialRow.worker == worker.token,
                )
                .values(
                    state="queued",
                    worker=None,
                    lease_until=None,
                    started_at=None,
                    attempts=TrialRow.attempts - 1,
                )
            )
        return result.rowcount

    def requeue_lost(self, study_id: int, host: str, alive: Callable[[int], bool]) -> int:
        """Re-queue running trials whose worker process on `host` no longer exists.

        Run before a local run starts, so that trials left by a killed run need not wait for
        their lease to expire. Returns how many were re-queued.
        """
        with self._tx() as conn:
            rows = conn.execute(
                select(TrialRow.id, TrialRow.pid, TrialRow.worker).where(
                    TrialRow.study_id == study_id,
                    TrialRow.state == "running",
                    TrialRow.host == host,
                )
            ).all()
            n = 0
            for row in rows:
                if row.pid is not None and alive(row.pid):
                    continue
                n += conn.execute(
                    update(TrialRow)
                    .where(
                        TrialRow.id == row.id,
                        TrialRow.state == "running",
                        TrialRow.worker == row.worker,
                    )
                    .values(
                        state="queued",
                        worker=None,
                        lease_until=None,
                        error=_append_note(
                            f"attempt lost: process {row.pid} on {host} ended mid-trial"
                        ),
                    )
                ).rowcount
        return n

    def requeue_failed(self, study_id: int, max_retries: int) -> int:
        """Re-queue failed trials for another attempt.

        A failed trial is retried while ``attempts <= max_retries``: with `max_retries` = 1 a
        trial runs at most twice, with 0 never again. Returns how many were re-queued.
        """
        with self._tx() as conn:
            result = conn.execute(
                update(TrialRow)
                .where(
                    TrialRow.study_id == study_id,
                    TrialRow.state == "failed",
                    TrialRow.attempts <= max_retries,
                )
                .values(state="queued", worker=None, lease_until=None)
            )
        return result.rowcount

    def _requeue_expired(self, conn: Connection, study_id: int, now: float) -> int:
        sql = _statements(conn.dialect.name)
        result = conn.execute(sql.requeue_expired, {"sid": study_id, "now": now})
        return result.rowcount

    # -- results ------------------------------------------------------------------------------

    def frame(
        self, study_id: int, *, metrics: bool = True, bookkeeping: bool = True
    ) -> pd.DataFrame:
        """One row per trial: bookkeeping columns, then one column per parameter and metric.

        One SELECT for the whole study; JSON columns are expanded in Python. With
        ``metrics=False`` only the study's own metric is there (as ``value``): the tables of a
        100,000-trial study need nothing else, and skipping the metrics JSON halves the time.
        With ``bookkeeping=False`` the only bookkeeping columns are ``id``, ``state``, ``seed``
        and ``value``: on SQLite, columns stored after a row's curves (``error``,
        ``torch_version``) cost a read of every curve, a pass over the whole database.
        """
        import pandas as pd

        cols = [TrialRow.id, TrialRow.state, TrialRow.seed, TrialRow.value]
        if bookkeeping:
            cols = [
                TrialRow.id,
                TrialRow.key,
                TrialRow.state,
                TrialRow.seed,
                TrialRow.attempts,
                TrialRow.host,
                TrialRow.pid,
                TrialRow.started_at,
                TrialRow.finished_at,
                TrialRow.duration,
                TrialRow.value,
                TrialRow.error,
                TrialRow.torch_version,
            ]
        cols.append(TrialRow.params)
        if metrics:
            cols.append(TrialRow.metrics)
        with self._tx(write=False) as conn:
            result = conn.execute(select(*cols).where(TrialRow.study_id == study_id)).all()
            # Sorted here: the rows come in index order (state, then id), a few sorted runs
            # that Python merges faster than SQLite sorts them in a temporary B-tree.
            rows = sorted(result, key=itemgetter(0))
        names = [c.key for c in cols]
        # Column by column (itemgetter over the rows is 4x faster than transposing with zip).
        column = {n: list(map(itemgetter(i), rows)) for i, n in enumerate(names)} if rows else {}
        base_names = [n for n in names if n not in ("params", "metrics")]
        base = pd.DataFrame.from_records([], columns=base_names)
        if rows:
            base = pd.DataFrame({n: column[n] for n in base_names})
        # Trials of one configuration differ only in their seed: parse each params text once,
        # build one row per configuration, and repeat it per trial (a vectorised take).
        configs: dict[str, int] = {}
        codes = [configs.setdefault(text, len(configs)) for text in column.get("params", ())]
        params = pd.DataFrame.from_records([json.loads(text) for text in configs])
        params = params.take(codes) if len(params.columns) else pd.DataFrame(index=base.index)
        params.index = base.index
        params = params.drop(columns=[c for c in params.columns if c in base_names])
        parts = [base, params]
        metric_names: list[str] = []
        if metrics:
            values = pd.DataFrame.from_records(
                [json.loads(text) if text else {} for text in column.get("metrics", ())],
                index=base.index,
            )
            values = values.drop(columns=[c for c in values.columns if c in base_names])
            metric_names = list(values.columns)
            parts.append(values)
        frame = pd.concat(parts, axis=1)
        frame.attrs["params"] = list(params.columns)
        frame.attrs["metrics"] = metric_names
        return frame

    def curves(self, trial_ids: Sequence[int]) -> dict[int, dict[str, list[float]]]:
        """Per-epoch curves of the given trials (trials without curves are absent)."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                select(TrialRow.id, TrialRow.curves).where(TrialRow.id.in_(list(trial_ids)))
            ).all()
        return {r.id: json.loads(r.curves) for r in rows if r.curves}


def _merge(old: Study, new: Study) -> Study:
    """`new`, with axis values and seeds of `old` that `new` left out appended (never lost)."""
    axes = {k: list(v) for k, v in new.axes.items()}
    for key, values in old.axes.items():
        if key in axes:
            axes[key] += [v for v in values if v not in axes[key]]
    seeds = tuple(new.seeds) + tuple(s for s in old.seeds if s not in new.seeds)
    return dataclasses.replace(new, axes=axes, seeds=seeds)


def _enqueue(conn: Connection, study_id: int, plan: Sequence[PlannedTrial], now: float) -> None:
    """Insert planned trials as queued; a key the study already holds is left alone."""
    if not plan:
        return
    conn.execute(
        _insert(conn, TrialRow).on_conflict_do_nothing(index_elements=["study_id", "key"]),
        [
            {
                "study_id": study_id,
                "key": t.key,
                "group_key": t.group,
                "params": canonical_json(t.params),
                "seed": t.seed,
                "state": "queued",
                "attempts": 0,
                "created_at": now,
            }
            for t in plan
        ],
    )


def _append_note(note: str) -> Any:
    return func.coalesce(TrialRow.error, "") + note + "\n"


@dataclass(frozen=True)
class _Statements:
    """The statements of the trial life cycle's hot path, built once per dialect."""

    requeue_expired: Executable
    take_oldest: Executable
    oldest_group: Executable
    group_size: Executable
    group_ids: Executable
    take_ids: Executable
    record: Executable
    record_error: Executable


@cache
def _statements(dialect: str) -> _Statements:
    now = bindparam("now", type_=Float)
    queued = (TrialRow.study_id == bindparam("sid"), TrialRow.state == "queued")
    oldest = select(TrialRow.id).where(*queued).order_by(TrialRow.id).limit(1)
    group_ids = (
        select(TrialRow.id)
        .where(*queued, TrialRow.group_key == bindparam("group"))
        .order_by(TrialRow.id)
        .limit(bindparam("limit"))
    )
    if dialect == "postgresql":
        # Skip rows another worker's claim holds instead of waiting for it to commit.
        oldest = oldest.with_for_update(skip_locked=True)
        group_ids = group_ids.with_for_update(skip_locked=True)
    take = {
        "state": "running",
        "worker": bindparam("token"),
        "host": bindparam("host_name"),
        "pid": bindparam("process"),
        "attempts": TrialRow.attempts + 1,
        "started_at": now,
        "finished_at": None,
        "duration": None,
        "lease_until": bindparam("until", type_=Float),
    }
    taken = (TrialRow.id, TrialRow.key, TrialRow.params, TrialRow.seed)
    ours = (
        TrialRow.id == bindparam("trial_id"),
        TrialRow.state == "running",
        TrialRow.worker == bindparam("token"),
    )
    result = {
        "state": bindparam("outcome"),
        "finished_at": now,
        "duration": now - TrialRow.started_at,
        "lease_until": None,
        "value": bindparam("metric_value", type_=Float),
        "metrics": bindparam("metrics_json"),
        "curves": bindparam("curves_json"),
        "torch_version": bindparam("torch"),
    }
    return _Statements(
        requeue_expired=update(TrialRow)
        .where(
            TrialRow.study_id == bindparam("sid"),
            TrialRow.state == "running",
            TrialRow.lease_until < now,
        )
        .values(
            state="queued",
            lease_until=None,
            error=func.coalesce(TrialRow.error, "")
            + "attempt lost: lease of "
            + func.coalesce(TrialRow.worker, "?")
            + " expired\n",
            worker=None,
        ),
        take_oldest=update(TrialRow)
        .where(TrialRow.id == oldest.scalar_subquery(), TrialRow.state == "queued")
        .values(**take)
        .returning(*taken),
        oldest_group=select(TrialRow.group_key).where(*queued).order_by(TrialRow.id).limit(1),
        group_size=select(func.count()).where(
            TrialRow.study_id == bindparam("sid"), TrialRow.group_key == bindparam("group")
        ),
        group_ids=group_ids,
        take_ids=update(TrialRow)
        .where(TrialRow.id.in_(bindparam("ids", expanding=True)), TrialRow.state == "queued")
        .values(**take)
        .returning(*taken),
        record=update(TrialRow).where(*ours).values(**result),
        record_error=update(TrialRow).where(*ours).values(**result, error=bindparam("error_text")),
    )


def _insert(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _reason(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


def _engine(url: str, *, create: bool) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"cannot parse database URL {url!r}: use a file path such as results.db, or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:":
            file = Path(path)
            if not file.exists() and not create:
                raise StoreError(
                    f"no sweeper database at {path}: run `sweeper run STUDY_FILE` first, or "
                    "point --db / SWEEPER_DB at one"
                )
            if create and not file.parent.exists():
                raise StoreError(f"cannot create database {path}: no directory {file.parent}")
        engine = create_engine(url, connect_args={"timeout": 60})
        _configure_sqlite(engine)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"cannot open {safe_url(url)}: {exc}; for PostgreSQL install sweeper[postgres]"
        ) from None


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: durable across process crashes (kill -9); a power cut may lose the
        # last transactions, never corrupt the file.
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        # Reads through a memory map instead of a read() per page: a query touching every
        # trial of a 100,000-trial study (whose curves spread it over 100,000 pages) runs in
        # about half the time. Writes still go through the journal.
        cur.execute("PRAGMA mmap_size = 1073741824")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("sweeper_write", True)
        # Straight to the driver: a full SQLAlchemy execution here costs 5% of a claim.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")  # type: ignore[union-attr]
