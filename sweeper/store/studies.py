"""Writing studies: create or extend one with its planned trials, grow a searched study by
new proposals, record where its results came from, and delete one with all it holds."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

from sqlalchemy import Connection, delete, func, select, update

from sweeper.canonical import canonical_json
from sweeper.errors import StudyConflictError
from sweeper.plan import PlannedTrial
from sweeper.search import NewProposal, Proposal, TrialResult
from sweeper.store import queries
from sweeper.store.engine import insert
from sweeper.store.queue import enqueue
from sweeper.store.records import PROVENANCE_FIELDS, DeleteReport, EnqueueReport
from sweeper.store.schema import ProposalRow, StudyRow, TrialCurveRow, TrialRow
from sweeper.study import Study, conflicting_keys


def save_study(
    conn: Connection,
    study: Study,
    plan: Sequence[PlannedTrial],
    provenance: Mapping[str, str | None],
) -> EnqueueReport:
    """Create or extend `study` and enqueue `plan`: see `Store.save_study`."""
    now = time.time()
    row = conn.execute(
        select(StudyRow.id, StudyRow.config).where(StudyRow.name == study.name)
    ).first()
    created = row is None
    if row is None:
        study_id = conn.execute(
            insert(conn.dialect.name, StudyRow)
            .values(
                name=study.name,
                task=study.task,
                kind=study.kind,
                metric=study.metric,
                direction=study.direction,
                config=study.to_json(),
                source=study.source,
                created_at=now,
                updated_at=now,
                **provenance,
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
                **provenance,
            )
        )
    before = conn.scalar(select(func.count()).where(TrialRow.study_id == study_id)) or 0
    enqueue(conn, study_id, plan, now)
    after = conn.scalar(select(func.count()).where(TrialRow.study_id == study_id)) or 0
    return EnqueueReport(study_id, after - before, after, created)


def set_provenance(conn: Connection, study_id: int, fields: Mapping[str, str | None]) -> bool:
    """Write the given provenance columns of one study. Returns whether the study exists."""
    if not fields:
        return conn.scalar(select(StudyRow.id).where(StudyRow.id == study_id)) is not None
    result = conn.execute(update(StudyRow).where(StudyRow.id == study_id).values(**fields))
    return result.rowcount == 1


def check_provenance(fields: Mapping[str, str | None]) -> None:
    """Raises ValueError naming the unknown keys and the valid ones."""
    unknown = sorted(set(fields) - set(PROVENANCE_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown provenance field{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; choose from: {', '.join(PROVENANCE_FIELDS)}"
        )


def extend_search(
    conn: Connection,
    study_id: int,
    budget: int,
    want: int,
    propose: Callable[[list[Proposal], list[TrialResult]], list[NewProposal]],
    curve: str | None,
) -> int:
    """Add up to `want` proposals, never past `budget`: see `Store.extend_search`."""
    now = time.time()
    if conn.dialect.name == "postgresql":
        conn.execute(select(StudyRow.id).where(StudyRow.id == study_id).with_for_update())
    existing = queries.proposals(conn, study_id)
    n = min(want, budget - len(existing))
    if n <= 0:
        return 0
    new = propose(existing, queries.search_trials(conn, study_id, curve))[:n]
    if new:
        conn.execute(
            insert(conn.dialect.name, ProposalRow),
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
        enqueue(conn, study_id, [t for p in new for t in p.trials], now)
    return len(new)


def delete_study(conn: Connection, study_id: int) -> DeleteReport | None:
    """Delete a study and every row that belongs to it: see `Store.delete_study`.

    Each table is emptied of the study's rows explicitly, children first, rather than through
    ON DELETE CASCADE: SQLite honours that only on connections with foreign keys on, and a
    database another tool opens may not have them.
    """
    if conn.dialect.name == "postgresql":
        # The lock `extend_search` takes: no proposal is added while the study goes.
        conn.execute(select(StudyRow.id).where(StudyRow.id == study_id).with_for_update())
    trial_ids = select(TrialRow.id).where(TrialRow.study_id == study_id).scalar_subquery()
    curves = conn.execute(delete(TrialCurveRow).where(TrialCurveRow.trial_id.in_(trial_ids)))
    trials = conn.execute(delete(TrialRow).where(TrialRow.study_id == study_id))
    proposals = conn.execute(delete(ProposalRow).where(ProposalRow.study_id == study_id))
    study = conn.execute(delete(StudyRow).where(StudyRow.id == study_id))
    if study.rowcount != 1:
        return None
    return DeleteReport(trials.rowcount, curves.rowcount, proposals.rowcount)


def _merge(old: Study, new: Study) -> Study:
    """`new`, with axis values and seeds of `old` that `new` left out appended (never lost)."""
    axes = {k: list(v) for k, v in new.axes.items()}
    for key, values in old.axes.items():
        if key in axes:
            axes[key] += [v for v in values if v not in axes[key]]
    seeds = tuple(new.seeds) + tuple(s for s in old.seeds if s not in new.seeds)
    return dataclasses.replace(new, axes=axes, seeds=seeds)
