"""Run a study: check, enqueue, start workers, summarise. Values in, values out; never prints.

`sweeper run`, `sweeper resume`, `sweeper worker` and the Python API (`sweeper.run`) are thin
faces of `start` + `execute` + `summarize` and of `work`.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.errors import SweeperError
from sweeper.launch.backends import BACKENDS
from sweeper.launch.limits import check_bounds, check_device, check_sampling, check_size
from sweeper.launch.modes import example_params, worker_options
from sweeper.launch.options import CODE_CHANGED, MODE_ALIASES, MODES, RunOptions, WorkerOptions
from sweeper.launch.worker import WorkerReport
from sweeper.registry import choose
from sweeper.study import Study

if TYPE_CHECKING:
    from sweeper.store import Store, StudyInfo


@dataclass(frozen=True)
class Started:
    """A study saved and its missing trials queued, ready for `execute`.

    Attributes:
        url: the database URL as workers anywhere can use it (SQLite paths made absolute).
        planned: trials the study holds when done (a search counts its whole budget).
        stored: trials stored now.
        todo: trials this run still has to finish.
        notes: what `start` found and did, e.g. ``["new study"]``, ``["3 new", "9 already
            completed"]``.
        where: where the workers run, in words.
        mode: how they train, in words.
    """

    study: Study
    study_id: int
    url: str
    options: RunOptions
    worker: WorkerOptions
    planned: int
    stored: int
    todo: int
    notes: tuple[str, ...]
    where: str
    mode: str


@dataclass(frozen=True)
class RunSummary:
    """A study's state after a run.

    Attributes:
        best_trial: the best single completed trial: ``{"value", "seed", "params"}``, or None.
        best: the best configuration, by its mean over seeds (what "best" means everywhere:
            ``{"value", "n", "params"}`` with the varying parameters only), or None.
        first_error: the first line of the first failed trial's error, or None.
        errors: the failed trials grouped by the first line of their error: ``(line, count)``,
            the most frequent first (ties in the order the trials were stored).
        first_failed: the id of the first failed trial, or None.
    """

    name: str
    metric: str
    completed: int
    failed: int
    pruned: int
    left: int
    elapsed: float
    best_trial: dict[str, Any] | None
    first_error: str | None
    errors: tuple[tuple[str, int], ...] = ()
    first_failed: int | None = None
    best: dict[str, Any] | None = None


def check(options: RunOptions) -> RunOptions:
    """`options` with its mode spelled the canonical way, after checking every choice.

    Raises:
        UnknownNameError: an unknown backend or mode (the message lists the valid ones).
        SweeperError: a scheduler without the dask backend, or the dask backend without one;
            a number out of bounds, or too many local workers (see `limits.check_bounds`).
    """
    choose("backend", options.backend, BACKENDS)
    mode = MODE_ALIASES.get(options.mode, options.mode)
    choose("mode", mode, MODES)
    choose("--code-changed choice", options.code_changed, CODE_CHANGED)
    if options.backend == "dask" and not options.scheduler:
        raise SweeperError("--backend dask needs --scheduler tcp://HOST:PORT")
    if options.backend != "dask" and options.scheduler:
        raise SweeperError("--scheduler is for --backend dask; the local backend needs none")
    check_bounds(options)
    return replace(options, mode=mode)


def start(study: Study, db: str | None, options: RunOptions) -> Started:
    """Check everything about the run, then save the study and queue what is missing.

    Re-queues trials of a run that ended mid-trial on this host, and failed trials with
    attempts left (`RunOptions.max_retries`).

    Raises:
        SweeperError: anything wrong with the options (see `check`), the study's size or
            search space (`limits.check_size`, `limits.check_sampling`), the task's data, the
            Dask scheduler (unreachable) or the database; nothing is written when the input is
            at fault.
    """
    return start_all([study], db, options)[0]


def start_all(studies: Sequence[Study], db: str | None, options: RunOptions) -> list[Started]:
    """`start` for several studies of one database: every study is checked before any is
    saved, so that a mistake in the last one writes nothing.

    Raises:
        As `start`.
    """
    from sweeper.store import Store, resolve_url

    # Everything that can be wrong with the input is checked before the database is touched.
    options = check(options)
    if options.backend == "dask" and options.scheduler:
        from sweeper.launch.dask_check import check_scheduler

        check_scheduler(options.scheduler)
    prepared = [_prepare(study, options) for study in studies]
    url = resolve_url(db)
    with Store(url, create=True) as store:
        for p in prepared:
            if p.code is not None:
                _check_code(store, p.study, p.code.sha256, p.code.path, options.code_changed)
        return [_save(store, p, url, options) for p in prepared]


@dataclass(frozen=True)
class _Prepared:
    """A study checked and planned, not yet saved."""

    study: Study
    task: Any
    code: Any
    plan: list[Any]
    worker: WorkerOptions
    mode: str


def _prepare(study: Study, options: RunOptions) -> _Prepared:
    """Check one study against the (checked) options and plan its grid; writes nothing."""
    from sweeper.data import resolve_data_dir
    from sweeper.plan import grid
    from sweeper.tasks.resolve import code_identity, task_for

    check_size(study, options.max_trials)
    task = task_for(study)
    check_device(study, task, options)
    code = code_identity(study)
    if study.searched:
        check_sampling(study, task.group_key)
    # A searched study's trials are enqueued by its workers as the sampler proposes them.
    plan = [] if study.searched else grid(study, task.group_key)
    data = resolve_data_dir(options.data_dir)
    task.check_data(example_params(study, task), data)
    # Local workers get the resolved directory; remote ones resolve their own unless told.
    worker_data = data if options.backend == "local" or options.data_dir else None
    worker, mode = worker_options(study, task, options, worker_data)
    return _Prepared(study, task, code, plan, worker, mode)


def _save(store: Store, p: _Prepared, url: str, options: RunOptions) -> Started:
    """Save a prepared study, queue what is missing; what `start` returns for it."""
    from sweeper.store.provenance import provenance

    study, task, code = p.study, p.task, p.code
    source = Path(study.source) if study.source and Path(study.source).is_file() else None
    facts = provenance(source)
    if code is not None:
        facts.update(code_hash=code.sha256, code=code.source)
    report = store.save_study(study, p.plan, provenance=facts)
    planned, proposed = report.total, 0
    if study.searched:
        from sweeper.search import seed_plan

        proposals = store.proposals(report.study_id)
        proposed = len(proposals)
        report = store.save_study(study, seed_plan(study, proposals, task.group_key))
        budget = max(study.budget or 0, proposed)
        planned = report.total + (budget - proposed) * len(study.seeds)
    lost = store.requeue_lost(report.study_id, socket.gethostname(), pid_alive)
    retried = store.requeue_failed(report.study_id, options.max_retries)
    counts = store.counts(report.study_id)
    notes = [f"{report.added} new" if not report.created else "new study"]
    if study.searched:
        notes = [
            f"{study.kind} search, {proposed} of {study.budget} configurations proposed "
            f"x {len(study.seeds)} seeds"
        ]
    if counts["completed"]:
        notes.append(f"{counts['completed']} already completed")
    if lost:
        notes.append(f"{lost} re-queued from a run that ended mid-trial")
    if retried:
        notes.append(f"{retried} failed re-queued for a retry")
    where = (
        f"{options.workers or os.cpu_count() or 1} local workers"
        if options.backend == "local"
        else f"the Dask cluster at {options.scheduler}"
    )
    return Started(
        study=study,
        study_id=report.study_id,
        url=shareable(url),
        options=options,
        worker=p.worker,
        planned=planned,
        stored=report.total,
        todo=counts["queued"] + counts["running"] + planned - report.total,
        notes=tuple(notes),
        where=where,
        mode=p.mode,
    )


def _check_code(store: Any, study: Study, sha256: str, path: str, policy: str) -> None:
    """Refuse to mix two versions of a user's code in one study, unless told to.

    Raises:
        CodeChangedError: the code differs from the stored study's and `policy` is ``refuse``.
    """
    from sweeper.errors import UnknownStudyError
    from sweeper.tasks.resolve import CodeChangedError

    try:
        stored = store.study(study.name)
    except UnknownStudyError:
        return
    if stored.code_hash is None or stored.code_hash == sha256 or policy == "new-trials":
        return
    raise CodeChangedError(
        f"{path} changed since study {study.name!r} ran it (code {stored.code_hash[:12]}, now "
        f"{sha256[:12]}): run with --code-changed new-trials to keep the old results and run "
        "what is missing with the new code, or give the study a new name"
    )


def execute(
    started: Started,
    on_event: Callable[[str], None] | None = None,
    *,
    then: Sequence[Started] = (),
) -> list[WorkerReport]:
    """Run the workers until the study has no trial left to run (nothing when `todo` is 0).

    `then`: more started studies (of the same database and options) for the same workers,
    each once the one before has nothing queued: one start of the workers for several studies.

    KeyboardInterrupt (`sweeper.launch.signals.Interrupted` on SIGINT or SIGTERM) passes through
    after the workers have put their unfinished trials back. `on_event` gets one line when a
    worker dies and is replaced.

    Raises:
        ValueError: the studies of `then` do not share `started`'s database and options.
    """
    runs = [s for s in (started, *then) if s.todo]
    if not runs:
        return []
    first = runs[0]
    if any(s.url != first.url or s.options != first.options for s in runs[1:]):
        raise ValueError("studies run by the same workers need one database and one set of options")
    options = first.options
    launcher = BACKENDS[options.backend]
    return launcher(
        first.url,
        first.study.name,
        options.workers,
        first.worker,
        options.scheduler,
        on_event=on_event,
        then=[(s.study.name, s.worker) for s in runs[1:]],
    )


def summarize(url: str, name: str, elapsed: float = 0.0) -> RunSummary:
    """Counts, the best configuration (seed mean), the best single trial and the failures of
    the study called `name`."""
    from sweeper.store import Store

    with Store(url) as store:
        info = store.study(name)
        frame = store.frame(info.id)  # one read, so the counts and the best trial agree
        config = store.best_config(info.id, info.study.direction)
    study = info.study
    names = list(study.search) if study.searched else list(study.axes)
    counts = frame["state"].value_counts()
    done = frame[frame["state"] == "completed"]
    best: dict[str, Any] | None = None
    if not done.empty:
        row = done.sort_values(
            "value", ascending=study.direction == "minimize", kind="stable"
        ).iloc[0]
        best = {
            "value": float(row["value"]),
            "seed": int(row["seed"]),
            "params": {k: row[k] for k in names},
        }
    best_config = (
        None
        if config is None
        else {
            "value": config.mean,
            "n": config.n,
            "params": {k: config.params[k] for k in names if k in config.params},
        }
    )
    failed = frame[frame["state"] == "failed"]
    lines = [_first_line(e) for e in failed["error"]]
    # Counter keeps first-seen order, and most_common sorts stably: ties stay in trial order.
    errors = tuple(Counter(lines).most_common())
    return RunSummary(
        name=study.name,
        metric=study.metric,
        completed=int(counts.get("completed", 0)),
        failed=int(counts.get("failed", 0)),
        pruned=int(counts.get("pruned", 0)),
        left=int(counts.get("queued", 0) + counts.get("running", 0)),
        elapsed=elapsed,
        best_trial=best,
        first_error=lines[0] if lines else None,
        errors=errors,
        first_failed=int(failed.iloc[0]["id"]) if lines else None,
        best=best_config,
    )


def _first_line(error: Any) -> str:
    """The first non-empty line of a trial's error; a failed trial without one says so."""
    text = "" if error is None or (isinstance(error, float) and error != error) else str(error)
    return (text.strip().splitlines() or ["(no error recorded)"])[0].strip()


def work(
    db: str | None,
    study_name: str | None,
    options: RunOptions,
    *,
    wait: bool = False,
    poll_s: float = 5.0,
    on_join: Callable[[str, str], None] = lambda name, mode: None,
    on_event: Callable[[str], None] | None = None,
    around: Callable[[Store, StudyInfo], AbstractContextManager[object]] | None = None,
) -> list[str]:
    """Join the studies of a shared database from this host and work until none is left.

    Args:
        study_name: only this study (None: every study with work).
        options: as for `start`; `data_dir` is used when given, else each study's task
            resolves its own ($SWEEPER_DATA_DIR, the user cache).
        wait: keep polling for new work every `poll_s` seconds instead of returning.
        on_join: called with a study's name and how its trials are trained, as the workers
            join it.
        on_event: called with one line when a worker dies and is replaced.
        around: a context (e.g. a progress display) held while this host works on a study.

    Returns:
        The names of the studies worked on.

    Raises:
        UnknownStudyError: `study_name` is not in the database.
    """
    from sweeper.data import resolve_data_dir
    from sweeper.launch.backends import launch_local
    from sweeper.store import Store, resolve_url
    from sweeper.tasks.resolve import task_for

    options = check(options)
    url = shareable(resolve_url(db))
    data = resolve_data_dir(options.data_dir) if options.data_dir is not None else None
    done: list[str] = []
    while True:
        with Store(url) as store:
            if study_name is not None:
                store.study(study_name)  # an unknown name is an error, not an empty queue
            names = [study_name] if study_name is not None else store.studies_with_work()
            for name in names:
                info = store.study(name)
                store.requeue_lost(info.id, socket.gethostname(), pid_alive)
                open_budget = info.study.searched and len(store.proposals(info.id)) < (
                    info.study.budget or 0
                )
                left = sum(store.counts(info.id)[s] for s in ("queued", "running"))
                if left == 0 and not open_budget:
                    continue
                task = task_for(info.study, code=info.code)
                worker, mode = worker_options(info.study, task, options, data)
                on_join(name, mode)
                with around(store, info) if around is not None else nullcontext():
                    launch_local(url, name, options.workers, worker, on_event=on_event)
                if name not in done:
                    done.append(name)
        if not wait:
            return done
        time.sleep(poll_s)


def shareable(url: str) -> str:
    """The URL with a relative SQLite path made absolute, for workers in other directories."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(Path(url.removeprefix(prefix)).resolve())
    return url


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is alive (a trial of a dead local run can be re-queued)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
