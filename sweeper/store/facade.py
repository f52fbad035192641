"""`Store`: the results database behind one object, the single source of truth for studies
and trials.

Each method is one transaction (`Database.tx`) around a function of `queue` (state changes),
`queries` (reads) or `studies` (study writes). Opening runs `migrations.open_schema`, which
upgrades a database an earlier release wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from sweeper.errors import StoreError, UnknownStudyError
from sweeper.plan import PlannedTrial
from sweeper.search import NewProposal, Proposal, TrialResult
from sweeper.store import queries, queue, studies
from sweeper.store.engine import Database, reason, safe_url
from sweeper.store.migrations import open_schema
from sweeper.store.queue import DEFAULT_LEASE_S
from sweeper.store.records import (
    BestConfig,
    DeleteReport,
    EnqueueReport,
    StudyInfo,
    StudyStats,
    StudySummary,
    WorkerId,
)
from sweeper.study import Study
from sweeper.tasks.base import TrialInput, TrialOutcome

if TYPE_CHECKING:
    import pandas as pd


class Store:
    """Open (and, if `create`, initialise) the database at `url`; upgrade it if an earlier
    sweeper wrote it.

    Raises:
        StoreError: the database does not exist (and `create` is false), cannot be read or
            upgraded, or is not a sweeper database.
        SchemaVersionError: a newer sweeper wrote it.
    """

    def __init__(self, url: str, *, create: bool = False) -> None:
        self.url = url
        self._db = Database(url, create=create)
        try:
            open_schema(self._db, create=create)
        except DBAPIError as exc:
            self._db.close()
            raise StoreError(f"cannot read database {safe_url(url)}: {reason(exc)}") from exc
        except StoreError:
            self._db.close()
            raise

    @property
    def engine(self) -> Engine:
        return self._db.engine

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- studies ------------------------------------------------------------------------------

    def save_study(
        self,
        study: Study,
        plan: Sequence[PlannedTrial],
        *,
        provenance: Mapping[str, str | None] | None = None,
    ) -> EnqueueReport:
        """Create the study or extend it, and enqueue every planned trial not yet stored.

        Enqueueing is idempotent: a trial whose key the study already holds is left alone
        (whatever its state). Axis values and seeds of an earlier run are kept in the stored
        study, so a study only grows. `provenance` (e.g. `sweeper.store.provenance.provenance`)
        replaces the given provenance columns, describing the latest run.

        Raises:
            StudyConflictError: a study of that name exists with another task or other fixed
                parameters; nothing is written.
            ValueError: `provenance` has a key not in `PROVENANCE_FIELDS`.
        """
        fields = dict(provenance or {})
        studies.check_provenance(fields)
        with self._db.tx() as conn:
            return studies.save_study(conn, study, plan, fields)

    def set_provenance(self, study_id: int, **fields: str | None) -> bool:
        """Write provenance columns of a study (keys of `PROVENANCE_FIELDS`, e.g. ``code``).

        Returns:
            Whether the study exists (False: nothing was written).

        Raises:
            ValueError: an unknown field; the message lists the valid ones.
        """
        studies.check_provenance(fields)
        with self._db.tx() as conn:
            return studies.set_provenance(conn, study_id, fields)

    def study(self, name: str) -> StudyInfo:
        """The study called `name`, with the provenance of its last run.

        Raises:
            UnknownStudyError: none by that name; the message lists the known ones.
        """
        with self._db.tx(write=False) as conn:
            info = queries.study(conn, name)
            names = queries.study_names(conn) if info is None else []
        if info is None:
            known = ", ".join(names) if names else "none yet"
            raise UnknownStudyError(
                f"no study named {name!r} in {safe_url(self.url)} (studies: {known})"
            )
        return info

    def delete_study(self, study_id: int) -> DeleteReport:
        """Delete a study with its trials, their curves and its proposals, in one transaction.

        A worker still running one of its trials loses it: its result is not written (`record`
        finds no trial to update).

        Returns:
            How many rows of each table were deleted.

        Raises:
            UnknownStudyError: no study has that id (another process deleted it first);
                nothing was deleted.
        """
        with self._db.tx() as conn:
            report = studies.delete_study(conn, study_id)
        if report is None:
            raise UnknownStudyError(f"no study with id {study_id} in {safe_url(self.url)}")
        return report

    def studies(self) -> list[StudySummary]:
        """Every study with its trial counts per state and the seed mean of its best
        configuration (see `best_config`)."""
        with self._db.tx(write=False) as conn:
            return queries.studies(conn)

    def studies_with_work(self) -> list[str]:
        """Names of studies with queued trials, or running trials whose lease has expired, or
        searched studies whose budget is not spent."""
        with self._db.tx(write=False) as conn:
            return queries.studies_with_work(conn)

    def counts(self, study_id: int) -> dict[str, int]:
        """Trials per state (every state present)."""
        with self._db.tx(write=False) as conn:
            return queries.counts(conn, study_id)

    def stats(self, study_id: int, direction: str) -> StudyStats:
        """Counts, timing, the best configuration, and the first running and failed trials."""
        with self._db.tx(write=False) as conn:
            return queries.stats(conn, study_id, direction)

    def best_config(self, study_id: int, direction: str) -> BestConfig | None:
        """The configuration with the best mean over its completed seeds (min or max by
        `direction`), as `sweeper best` ranks first; None before any completed trial.

        "Best" means this everywhere (`studies`, `status`, the progress bar): never the best
        single trial, which a lucky seed of a worse configuration can hold.
        """
        with self._db.tx(write=False) as conn:
            return queries.best_config(conn, study_id, direction)

    def best_value(self, study_id: int, direction: str) -> float | None:
        """The seed mean of `best_config`; None before any completed trial."""
        with self._db.tx(write=False) as conn:
            return queries.best_value(conn, study_id, direction)

    # -- searched studies ---------------------------------------------------------------------

    def proposals(self, study_id: int) -> list[Proposal]:
        """A searched study's proposals, in the order they were made."""
        with self._db.tx(write=False) as conn:
            return queries.proposals(conn, study_id)

    def search_trials(self, study_id: int, curve: str | None = None) -> list[TrialResult]:
        """Every trial of a study as the search sees it; with `curve`, that per-epoch curve."""
        with self._db.tx(write=False) as conn:
            return queries.search_trials(conn, study_id, curve)

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
        with self._db.tx() as conn:
            return studies.extend_search(conn, study_id, budget, want, propose, curve)

    def prune_queued(self, study_id: int, params: str) -> int:
        """Mark the still-queued trials of one configuration (by params JSON) as pruned."""
        with self._db.tx() as conn:
            return queue.prune_queued(conn, study_id, params, time.time())

    # -- the trial life cycle -----------------------------------------------------------------

    def claim(
        self,
        study_id: int,
        worker: WorkerId,
        *,
        limit: int = 1,
        share: int = 1,
        lease_s: float = DEFAULT_LEASE_S,
        cost: Callable[[str], float] | None = None,
    ) -> list[TrialInput]:
        """Claim up to `limit` queued trials of one batching group for `worker`.

        The group is that of the oldest queued trial; with `cost` (a group key -> the relative
        cost of one of its trials, e.g. the task's ``group_cost``), the group whose claim
        costs most, so that the longest parts start first and no worker idles at the end.
        With `share` workers sharing the study, a worker takes at most
        ``ceil(group_size / share)`` (all the group's trials, in any state), so that a group is
        trained in `share` equal parts rather than in ever smaller leftovers. Trials whose
        lease expired are re-queued first.

        Returns:
            The claimed trials (empty when nothing is queued). On a lost race (another worker
            claimed a row between read and update) the row is simply not returned.
        """
        with self._db.tx(keep=True) as conn:
            return queue.claim(
                conn, study_id, worker, limit=limit, share=share, lease_s=lease_s, cost=cost
            )

    def heartbeat(self, worker: WorkerId, lease_s: float = DEFAULT_LEASE_S) -> int:
        """Extend the lease of every trial `worker` is running. Returns how many."""
        with self._db.tx() as conn:
            return queue.heartbeat(conn, worker, lease_s)

    def record(
        self,
        worker: WorkerId,
        outcomes: Sequence[TrialOutcome],
        metric: str,
        torch_version: str | None = None,
        code_hash: str | None = None,
    ) -> int:
        """Store finished trials: completed, or failed when `outcome.error` is set.

        Each trial's metrics, error, log (``outcome.log`` where the outcome has one), curves
        (in `trial_curves`), `torch_version` and `code_hash` are written. Only trials still
        running under `worker` are written (compare-and-set), so a worker that lost its lease
        cannot overwrite the trial's new owner. Returns how many were written.
        """
        with self._db.tx(keep=True) as conn:
            return queue.record(conn, worker, outcomes, metric, torch_version, code_hash)

    def release(self, worker: WorkerId, trial_ids: Sequence[int]) -> int:
        """Put trials `worker` was running back in the queue (on Ctrl-C): not an attempt."""
        if not trial_ids:
            return 0
        with self._db.tx() as conn:
            return queue.release(conn, worker, trial_ids)

    def requeue_lost(self, study_id: int, host: str, alive: Callable[[int], bool]) -> int:
        """Re-queue running trials whose worker process on `host` no longer exists.

        Run before a local run starts, so that trials left by a killed run need not wait for
        their lease to expire. Returns how many were re-queued.
        """
        with self._db.tx() as conn:
            return queue.requeue_lost(conn, study_id, host, alive)

    def requeue_failed(self, study_id: int, max_retries: int) -> int:
        """Re-queue failed trials for another attempt.

        A failed trial is retried while ``attempts <= max_retries``: with `max_retries` = 1 a
        trial runs at most twice, with 0 never again. Returns how many were re-queued.
        """
        with self._db.tx() as conn:
            return queue.requeue_failed(conn, study_id, max_retries)

    # -- results ------------------------------------------------------------------------------

    def frame(
        self, study_id: int, *, metrics: bool = True, bookkeeping: bool = True
    ) -> pd.DataFrame:
        """One row per trial: bookkeeping columns, then one column per parameter and metric.

        One SELECT for the whole study; JSON columns are expanded in Python; curves are never
        read (see `curves`). With ``metrics=False`` only the study's own metric is there (as
        ``value``): the tables of a 100,000-trial study need nothing else, and skipping the
        metrics JSON halves the time. With ``bookkeeping=False`` the only bookkeeping columns
        are ``id``, ``state``, ``seed`` and ``value``; with it, also ``key``, ``attempts``,
        ``host``, ``pid``, timing, ``error``, ``torch_version`` and ``log`` (the output tail
        of a command task, None for others).
        """
        with self._db.tx(write=False) as conn:
            return queries.frame(conn, study_id, metrics=metrics, bookkeeping=bookkeeping)

    def curves(self, trial_ids: Sequence[int]) -> dict[int, dict[str, list[float]]]:
        """Per-epoch curves of the given trials (trials without curves are absent)."""
        with self._db.tx(write=False) as conn:
            return queries.curves(conn, trial_ids)
