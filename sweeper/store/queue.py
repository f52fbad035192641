"""The trial queue: enqueue, claim, heartbeat, record, release and requeue.

Every state change is a compare-and-set (``UPDATE ... WHERE state = <expected>``) whose row
count or RETURNING rows say whether it won. A running trial holds a lease that its worker's
heartbeat renews; a trial whose lease ran out is put back in the queue by the next claim, so
a trial whose worker died is never stuck. Recording writes the trial's row, then (only if it
won) its curves into ``trial_curves``. Each function runs inside the caller's transaction
(`sweeper.store.engine.Database.tx`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Connection, Executable, Float, bindparam, case, func, select, update

from sweeper.canonical import canonical_json
from sweeper.plan import PlannedTrial
from sweeper.store.engine import insert
from sweeper.store.records import WorkerId
from sweeper.store.schema import TrialRow
from sweeper.tasks.base import TrialInput, TrialOutcome

DEFAULT_LEASE_S = 30.0


def enqueue(conn: Connection, study_id: int, plan: Sequence[PlannedTrial], now: float) -> None:
    """Insert planned trials as queued; a key the study already holds is left alone."""
    if not plan:
        return
    conn.execute(
        insert(conn.dialect.name, TrialRow).on_conflict_do_nothing(
            index_elements=["study_id", "key"]
        ),
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


def claim(
    conn: Connection,
    study_id: int,
    worker: WorkerId,
    *,
    limit: int,
    share: int,
    lease_s: float,
    cost: Callable[[str], float] | None = None,
) -> list[TrialInput]:
    """Claim up to `limit` queued trials of one batching group: see `Store.claim`."""
    now = time.time()
    sql = _statements(conn.dialect.name)
    take = {
        "sid": study_id,
        "token": worker.token,
        "host_name": worker.host,
        "process": worker.pid,
        "now": now,
        "until": now + lease_s,
    }
    conn.execute(sql.requeue_expired, {"sid": study_id, "now": now})
    if limit == 1:
        # One trial has no group to keep together: take the oldest queued one in the
        # statement that picks it.
        rows = conn.execute(sql.take_oldest, take).all()
    else:
        if cost is not None:
            group = _costliest_group(conn, sql, study_id, limit, share, cost)
        else:
            first = conn.execute(sql.oldest_group, {"sid": study_id}).first()
            group = None if first is None else first[0]
        if group is None:
            return []
        if share > 1:
            # Split the whole group evenly: the second worker takes as much as the first,
            # and a worker coming back for the rest takes all of it, not half.
            size = conn.scalar(sql.group_size, {"sid": study_id, "group": group}) or 0
            limit = max(1, min(limit, math.ceil(size / share)))
        ids = list(conn.scalars(sql.group_ids, {"sid": study_id, "group": group, "limit": limit}))
        if not ids:
            return []
        rows = conn.execute(sql.take_ids, {**take, "ids": ids}).all()
    # Compare-and-set: RETURNING yields only the rows this statement moved to running.
    rows = sorted(rows, key=lambda r: int(r.id))
    return [TrialInput(r.id, r.key, json.loads(r.params), r.seed) for r in rows]


def _costliest_group(
    conn: Connection,
    sql: _Statements,
    study_id: int,
    limit: int,
    share: int,
    cost: Callable[[str], float],
) -> str | None:
    """The queued group whose claim costs most (`cost` per trial times the trials this claim
    would take), the oldest among equals: the longest parts start first, so that no worker is
    left alone with one at the end (longest processing time first)."""
    best: tuple[float, int] | None = None
    group = None
    for key, size, queued, oldest in conn.execute(sql.queued_groups, {"sid": study_id}):
        take = min(int(queued), limit, math.ceil(int(size) / share))
        score = (cost(key) * take, -int(oldest))
        if best is None or score > best:
            best, group = score, key
    return group


def heartbeat(conn: Connection, worker: WorkerId, lease_s: float) -> int:
    """Extend the lease of every trial `worker` is running. Returns how many."""
    result = conn.execute(
        update(TrialRow)
        .where(TrialRow.worker == worker.token, TrialRow.state == "running")
        .values(lease_until=time.time() + lease_s)
    )
    return result.rowcount


def record(
    conn: Connection,
    worker: WorkerId,
    outcomes: Sequence[TrialOutcome],
    metric: str,
    torch_version: str | None,
    code_hash: str | None,
) -> int:
    """Store finished trials still running under `worker`: see `Store.record`."""
    now = time.time()
    written = 0
    sql = _statements(conn.dialect.name)
    driver: Any = conn.connection.driver_connection
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
            "torch": torch_version,
            "code": code_hash,
            # `TrialOutcome.log` (a command task's output tail) is newer than some tasks.
            "log_text": getattr(out, "log", None),
        }
        if out.error is not None:
            values["error_text"] = out.error
        won = conn.execute(sql.record if out.error is None else sql.record_error, values).rowcount
        if not won:
            continue
        written += 1
        # Straight to the driver (a full SQLAlchemy execution costs a tenth of a
        # claim-and-record cycle). Without curves, delete those of an earlier attempt.
        if out.curves:
            driver.execute(sql.save_curves, (out.trial_id, json.dumps(out.curves)))
        else:
            driver.execute(sql.drop_curves, (out.trial_id,))
    return written


def release(conn: Connection, worker: WorkerId, trial_ids: Sequence[int]) -> int:
    """Put trials `worker` was running back in the queue (on Ctrl-C): not an attempt."""
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


def requeue_lost(conn: Connection, study_id: int, host: str, alive: Callable[[int], bool]) -> int:
    """Re-queue running trials whose worker process on `host` no longer exists."""
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
                error=_append_note(f"attempt lost: process {row.pid} on {host} ended mid-trial"),
            )
        ).rowcount
    return n


def requeue_failed(conn: Connection, study_id: int, max_retries: int) -> int:
    """Re-queue failed trials with ``attempts <= max_retries``. Returns how many."""
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


def prune_queued(conn: Connection, study_id: int, params: str, now: float) -> int:
    """Mark the still-queued trials of one configuration (by params JSON) as pruned."""
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


def _append_note(note: str) -> Any:
    return func.coalesce(TrialRow.error, "") + note + "\n"


@dataclass(frozen=True)
class _Statements:
    """The statements of the trial life cycle's hot path, built once per dialect.

    Prepared with bound parameters: building and cache-keying SQLAlchemy expressions on every
    call cost twice the SQL itself (bench/orchestrator.py).
    """

    requeue_expired: Executable
    take_oldest: Executable
    oldest_group: Executable
    queued_groups: Executable  # (group_key, trials, queued trials, oldest queued id)
    group_size: Executable
    group_ids: Executable
    take_ids: Executable
    record: Executable
    record_error: Executable
    save_curves: str  # driver SQL: (trial_id, curves)
    drop_curves: str  # driver SQL: (trial_id,)


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
        "torch_version": bindparam("torch"),
        "code_hash": bindparam("code"),
        "log": bindparam("log_text"),
    }
    mark = "?" if dialect == "sqlite" else "%s"
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
        queued_groups=select(
            TrialRow.group_key,
            func.count(),
            func.sum(case((TrialRow.state == "queued", 1), else_=0)),
            func.min(case((TrialRow.state == "queued", TrialRow.id), else_=None)),
        )
        .where(TrialRow.study_id == bindparam("sid"))
        .group_by(TrialRow.group_key)
        .having(func.sum(case((TrialRow.state == "queued", 1), else_=0)) > 0),
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
        save_curves=f"INSERT INTO trial_curves (trial_id, curves) VALUES ({mark}, {mark}) "
        "ON CONFLICT (trial_id) DO UPDATE SET curves = excluded.curves",
        drop_curves=f"DELETE FROM trial_curves WHERE trial_id = {mark}",
    )
