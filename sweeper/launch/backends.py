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
from dataclasses import replace
from typing import Protocol

from sweeper.errors import SweeperError
from sweeper.launch import signals
from sweeper.launch.options import WorkerOptions
from sweeper.launch.supervisor import OnEvent, supervise
from sweeper.launch.worker import WorkerReport, run_worker
from sweeper.registry import choose


class Launcher(Protocol):
    """A backend: run `workers` workers on the study until it is done; their reports.

    `on_event` gets one line of text when something happens to a worker that a person should
    know (a worker died and was replaced); a backend may never call it.
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
    ) -> list[WorkerReport]: ...


def launch_local(
    db_url: str,
    study_name: str,
    workers: int | None,
    options: WorkerOptions,
    scheduler: str | None = None,
    *,
    on_event: OnEvent | None = None,
) -> list[WorkerReport]:
    """Run `workers` workers (default: one per core) on this machine until the study is done.

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
            return [run_worker(db_url, study_name, options)]
    # Workers exit when this process dies (kill -9), so a killed run leaves no orphan training.
    opts = replace(options, parent_pid=os.getpid(), share=n)
    return supervise(db_url, study_name, n, opts, on_event or _ignore)


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
) -> list[WorkerReport]:
    """Run workers on the Dask cluster at `scheduler`, through joblib's Dask backend.

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
        opts = replace(options, share=n)
        with parallel_config(backend="dask"):
            reports: list[WorkerReport] = Parallel(n_jobs=n)(
                delayed(run_worker)(db_url, study_name, opts) for _ in range(n)
            )
    return reports


#: backend name -> launcher; a new backend (Ray, SLURM) is one entry here, passing the same
#: contract suite (tests/test_executors.py).
BACKENDS: dict[str, Launcher] = {"dask": launch_dask, "local": launch_local}


def get_backend(name: str) -> Launcher:
    """The backend called `name`.

    Raises:
        UnknownNameError: not a known backend; the message lists the valid names.
    """
    return choose("backend", name, BACKENDS)
