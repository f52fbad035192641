"""Backends: where workers run. Each takes picklable values and returns worker reports.

``local`` runs `sweeper.launch.worker.run_worker` in worker processes on this machine, under a
supervisor that survives any one of them (`sweeper.launch.supervisor`), or in this process when
one worker is asked for. ``dask`` sends the same function through joblib's Dask backend to an
existing Dask cluster, whose workers may sit on other hosts and share the study's database
(PostgreSQL, or a SQLite file every host can reach). Every backend passes the same test suite
(`tests/test_executors.py`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from sweeper.errors import SweeperError
from sweeper.launch import signals
from sweeper.launch.options import Job, WorkerOptions
from sweeper.launch.supervisor import OnEvent, supervise
from sweeper.launch.worker import WorkerReport, run_jobs
from sweeper.registry import choose


class Launcher(Protocol):
    """A backend: run `workers` workers on the study until it is done; their reports.

    `on_event` gets one line of text when something happens to a worker that a person should
    know (a worker died and was replaced); a backend may never call it. `then`: more studies
    the same workers take next, each once the one before has nothing queued (one start of the
    workers for several studies); one report per worker and study.
    """

    def __call__(
        self,
        db_url: str,
        study_name: str,
        workers: int | None,
        options: WorkerOptions,
        scheduler: str | None = None,
        *,
        on_event: OnEvent | None = None,
        then: Sequence[Job] = (),
    ) -> list[WorkerReport]: ...


def _jobs(
    study_name: str, options: WorkerOptions, then: Sequence[Job], *, move_on: bool, **same: Any
) -> list[Job]:
    """The studies in order, each with `same` set in its options. With `move_on` a worker
    leaves any study but the last as soon as nothing is queued there (`WorkerOptions.linger`):
    right where a supervisor re-queues a dead worker's trials at once and starts its
    replacement on the first study; elsewhere they come back only when their lease expires, and
    the workers stay to take them."""
    jobs = [(study_name, options), *then]
    last = len(jobs) - 1
    return [
        (name, replace(opts, **same, linger=opts.linger and (i == last or not move_on)))
        for i, (name, opts) in enumerate(jobs)
    ]


def launch_local(
    db_url: str,
    study_name: str,
    workers: int | None,
    options: WorkerOptions,
    scheduler: str | None = None,
    *,
    on_event: OnEvent | None = None,
    then: Sequence[Job] = (),
) -> list[WorkerReport]:
    """Run `workers` workers (default: one per core) on this machine until the study (and
    those of `then`) is done.

    A worker process that dies is replaced and its trials go back to the queue (see
    `sweeper.launch.supervisor`); `on_event` hears of it.

    Raises:
        Interrupted: SIGINT or SIGTERM (a KeyboardInterrupt); the trials in flight are back in
            the queue, their attempts unchanged.
        SweeperError: a scheduler address was given, or workers kept dying.
    """
    if scheduler is not None:
        raise SweeperError("--scheduler is for --backend dask; the local backend needs none")
    n = workers or os.cpu_count() or 1
    if n == 1:
        with signals.raising():
            # No other worker: nothing it leaves behind could come back while it is away.
            return run_jobs(db_url, _jobs(study_name, options, then, move_on=True))
    # Workers exit when this process dies (kill -9), so a killed run leaves no orphan training.
    jobs = _jobs(study_name, options, then, move_on=True, parent_pid=os.getpid(), share=n)
    return supervise(db_url, jobs, n, on_event or _ignore)


def _ignore(line: str) -> None:
    return None


def launch_dask(
    db_url: str,
    study_name: str,
    workers: int | None,
    options: WorkerOptions,
    scheduler: str | None = None,
    *,
    on_event: OnEvent | None = None,
    then: Sequence[Job] = (),
) -> list[WorkerReport]:
    """Run workers on the Dask cluster at `scheduler`, through joblib's Dask backend (on the
    study, then on those of `then`).

    Args:
        workers: how many sweeper workers to start (default: one per Dask worker thread).
        on_event: not called: a Dask worker that dies is the cluster's to replace, and its
            trials come back to the queue when their lease expires.

    Raises:
        SweeperError: no scheduler address, dask.distributed missing, or the scheduler cannot
            be reached.
    """
    if not scheduler:
        raise SweeperError("--backend dask needs --scheduler tcp://HOST:PORT")
    try:
        from dask.distributed import Client
        from joblib import Parallel, delayed, parallel_config
    except ImportError:
        raise SweeperError(
            "--backend dask needs dask.distributed: pip install 'sweeper[dask]'"
        ) from None
    try:
        client = Client(scheduler, timeout=10)  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise SweeperError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with client:
        threads = client.nthreads()  # type: ignore[no-untyped-call]
        n = workers or max(1, sum(threads.values()))
        jobs = _jobs(study_name, options, then, move_on=False, share=n)
        with parallel_config(backend="dask"):
            per_worker: list[list[WorkerReport]] = Parallel(n_jobs=n)(
                delayed(run_jobs)(db_url, jobs) for _ in range(n)
            )
    return [report for reports in per_worker for report in reports]


#: backend name -> launcher; a new backend (Ray, SLURM) is one entry here, passing the same
#: contract suite (tests/test_executors.py).
BACKENDS: dict[str, Launcher] = {"dask": launch_dask, "local": launch_local}


def get_backend(name: str) -> Launcher:
    """The backend called `name`.

    Raises:
        UnknownNameError: not a known backend; the message lists the valid names.
    """
    return choose("backend", name, BACKENDS)
