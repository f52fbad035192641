"""Reading results: studies, counts, statistics, and trials as pandas DataFrames.

Each function takes a Connection inside the caller's read transaction. Aggregates are computed
by the database in one SELECT each; JSON columns are parsed in Python only where asked for.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from sweeper.search import Proposal, TrialResult
from sweeper.store.records import BestConfig, StudyInfo, StudyStats, StudySummary
from sweeper.store.schema import STATES, ProposalRow, StudyRow, TrialCurveRow, TrialRow
from sweeper.study import Study

if TYPE_CHECKING:
    import pandas as pd


def study(conn: Connection, name: str) -> StudyInfo | None:
    """The study called `name`, or None."""
    row = conn.execute(select(StudyRow).where(StudyRow.name == name)).first()
    if row is None:
        return None
    return StudyInfo(
        row.id,
        Study.from_json(row.config, row.source),
        row.created_at,
        row.updated_at,
        sweeper_version=row.sweeper_version,
        python_version=row.python_version,
        torch_version=row.torch_version,
        git_commit=row.git_commit,
        code_hash=row.code_hash,
        code=row.code,
    )


def study_names(conn: Connection) -> list[str]:
    return list(conn.scalars(select(StudyRow.name).order_by(StudyRow.name)))


def studies(conn: Connection) -> list[StudySummary]:
    """Every study with its trial counts per state and best metric value."""
    rows = conn.execute(
        select(
            StudyRow.id,
            StudyRow.name,
            StudyRow.task,
            StudyRow.kind,
            StudyRow.metric,
            StudyRow.direction,
            StudyRow.updated_at,
        ).order_by(StudyRow.name)
    ).all()
    count_rows = conn.execute(
        select(TrialRow.study_id, TrialRow.state, func.count()).group_by(
            TrialRow.study_id, TrialRow.state
        )
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for study_id, state, n in count_rows:
        counts.setdefault(study_id, dict.fromkeys(STATES, 0))[state] = n
    means = _config_means(conn, None)
    out = []
    for r in rows:
        best = _best_config(means.get(r.id, []), r.direction)
        out.append(
            StudySummary(
                r.name,
                r.task,
                r.kind,
                r.metric,
                r.direction,
                counts.get(r.id, dict.fromkeys(STATES, 0)),
                best.mean if best is not None else None,
                r.updated_at,
            )
        )
    return out


def studies_with_work(conn: Connection) -> list[str]:
    """Names of studies with queued trials, running trials whose lease has expired, or (for
    searched studies) budget left."""
    now = time.time()
    names = conn.scalars(
        select(StudyRow.name).where(
            select(TrialRow.id)
            .where(
                TrialRow.study_id == StudyRow.id,
                (TrialRow.state == "queued")
                | ((TrialRow.state == "running") & (TrialRow.lease_until < now)),
            )
            .exists()
        )
    ).all()
    searched = conn.execute(
        select(StudyRow.id, StudyRow.name, StudyRow.config).where(StudyRow.kind != "grid")
    ).all()
    open_names = [
        r.name
        for r in searched
        if len(proposals(conn, r.id)) < (Study.from_json(r.config).budget or 0)
    ]
    return sorted(set(names) | set(open_names))


def counts(conn: Connection, study_id: int) -> dict[str, int]:
    """Trials per state (every state present)."""
    rows = conn.execute(
        select(TrialRow.state, func.count())
        .where(TrialRow.study_id == study_id)
        .group_by(TrialRow.state)
    ).all()
    out = dict.fromkeys(STATES, 0)
    out.update({state: n for state, n in rows})
    return out


def stats(conn: Connection, study_id: int, direction: str) -> StudyStats:
    """Counts, timing, the best configuration, and the first running and failed trials."""
    done = (TrialRow.study_id == study_id, TrialRow.state == "completed")
    agg = conn.execute(
        select(
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
        counts=counts(conn, study_id),
        best=best_config(conn, study_id, direction),
        mean_duration=agg[0],
        first_start=agg[1],
        last_finish=agg[2],
        running=[(r[0], r[1], r[2]) for r in running],
        failed=[(r[0], r[1], r[2]) for r in failed],
    )


def best_config(conn: Connection, study_id: int, direction: str) -> BestConfig | None:
    """The configuration with the best seed mean (see `_config_means`); None before any."""
    return _best_config(_config_means(conn, study_id).get(study_id, []), direction)


def best_value(conn: Connection, study_id: int, direction: str) -> float | None:
    """The best configuration's seed mean; None before any completed trial."""
    best = best_config(conn, study_id, direction)
    return best.mean if best is not None else None


@dataclass(frozen=True)
class _ConfigMean:
    params: str
    mean: float
    n: int
    first: int


def _config_means(conn: Connection, study_id: int | None) -> dict[int, list[_ConfigMean]]:
    """Per study (one, or all with None), each configuration's mean over its completed trials.

    One GROUP BY in the database. A configuration is a distinct ``params`` text: the trials of
    one configuration differ only in their seed (a grid's axis values and a searched study's
    proposals alike, the fixed parameters being the same for all), so these are the groups
    `sweeper.report.best_configs` forms from the axis values. Trials without a value (NULL)
    count as `best_configs` counts them: not at all.
    """
    query = (
        select(
            TrialRow.study_id,
            TrialRow.params,
            func.avg(TrialRow.value),
            func.count(TrialRow.value),
            func.min(TrialRow.id),
        )
        .where(TrialRow.state == "completed", TrialRow.value.is_not(None))
        .group_by(TrialRow.study_id, TrialRow.params)
    )
    if study_id is not None:
        query = query.where(TrialRow.study_id == study_id)
    out: dict[int, list[_ConfigMean]] = {}
    for sid, params, mean, n, first in conn.execute(query):
        # PostgreSQL keeps a NaN (SQLite stores it as NULL); pandas' mean skips it, so no
        # configuration is ranked on one.
        if mean is not None and not math.isnan(mean):
            out.setdefault(sid, []).append(_ConfigMean(params, float(mean), int(n), int(first)))
    return out


def _best_config(means: Sequence[_ConfigMean], direction: str) -> BestConfig | None:
    """The best mean by `direction`; a tie goes to more seeds, then to the configuration whose
    first trial came first (`best_configs` breaks it by axis order: the same for a grid run
    once)."""
    if not means:
        return None
    sign = 1.0 if direction == "minimize" else -1.0
    best = min(means, key=lambda c: (sign * c.mean, -c.n, c.first))
    return BestConfig(json.loads(best.params), best.mean, best.n)


def proposals(conn: Connection, study_id: int) -> list[Proposal]:
    """A searched study's proposals, in the order they were made."""
    rows = conn.execute(
        select(ProposalRow.number, ProposalRow.params, ProposalRow.raw)
        .where(ProposalRow.study_id == study_id)
        .order_by(ProposalRow.number)
    ).all()
    return [Proposal(r[0], json.loads(r[1]), json.loads(r[2])) for r in rows]


def search_trials(conn: Connection, study_id: int, curve: str | None) -> list[TrialResult]:
    """Every trial of a study as the search sees it; with `curve`, that per-epoch curve."""
    cols: list[Any] = [TrialRow.params, TrialRow.seed, TrialRow.state, TrialRow.value]
    query = select(*cols)
    if curve is not None:
        query = select(*cols, TrialCurveRow.curves).outerjoin(
            TrialCurveRow, TrialCurveRow.trial_id == TrialRow.id
        )
    rows: list[Any] = list(
        conn.execute(query.where(TrialRow.study_id == study_id).order_by(TrialRow.id))
    )
    out = []
    for r in rows:
        values = None
        if curve is not None and r[4]:
            values = json.loads(r[4]).get(curve)
        out.append(TrialResult(r[0], r[1], r[2], r[3], values))
    return out


def curves(conn: Connection, trial_ids: Sequence[int]) -> dict[int, dict[str, list[float]]]:
    """Per-epoch curves of the given trials (trials without curves are absent)."""
    rows = conn.execute(
        select(TrialCurveRow.trial_id, TrialCurveRow.curves).where(
            TrialCurveRow.trial_id.in_(list(trial_ids))
        )
    ).all()
    return {r.trial_id: json.loads(r.curves) for r in rows if r.curves}


_BOOKKEEPING = (
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
    TrialRow.log,
)


def frame(conn: Connection, study_id: int, *, metrics: bool, bookkeeping: bool) -> pd.DataFrame:
    """One row per trial: see `Store.frame`."""
    import pandas as pd

    cols: list[Any] = [TrialRow.id, TrialRow.state, TrialRow.seed, TrialRow.value]
    if bookkeeping:
        cols = list(_BOOKKEEPING)
    cols.append(TrialRow.params)
    if metrics:
        cols.append(TrialRow.metrics)
    result = conn.execute(select(*cols).where(TrialRow.study_id == study_id)).all()
    # Sorted here: the rows come in index order (state, then id), a few sorted runs that
    # Python merges faster than SQLite sorts them in a temporary B-tree.
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
    out = pd.concat(parts, axis=1)
    out.attrs["params"] = list(params.columns)
    out.attrs["metrics"] = metric_names
    return out
