"""The `sweeper` command line. The only module that reads argv, prints, and picks exit codes.

Every error a user can cause is a `SweeperError` raised below; `main` prints it as one line
``Error: ...`` on stderr and exits 1 (usage errors exit 2), with a traceback only under
``--debug``. Tracebacks never show local variables: database URLs may carry passwords.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from sweeper.errors import StoreError, SweeperError, UnknownNameError

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.spec import Study
    from sweeper.store import Store, StudyInfo
    from sweeper.worker import WorkerOptions

app = typer.Typer(
    name="sweeper",
    help=(
        "Generalization sweeps (optimizer, lr, weight decay, SAM rho, seeds) with every trial "
        "kept in a results database.\n\n"
        "Start with `sweeper run studies/quick.toml`, then `sweeper table quick`. "
        "Add --debug to any command for a traceback on errors."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL or SQLite file (default: $SWEEPER_DB, else results.db here).",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="Output: rich, markdown, csv, latex or json.")
]
EXECUTION_MODES = ("auto", "batched", "trial")
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        help="Worker processes (default: one per core; dask: one per worker thread).", min=1
    ),
]
ThreadsOpt = Annotated[int, typer.Option(help="Torch threads per worker.", min=1)]
RetriesOpt = Annotated[int, typer.Option(help="Retry a failed trial up to this many times.", min=0)]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="Dataset directory (default: $SWEEPER_DATA_DIR, else a user cache)."),
]
DeviceOpt = Annotated[str, typer.Option(help="Torch device for training (cpu, cuda).")]
BackendOpt = Annotated[str, typer.Option(help="Where workers run: local or dask.")]
SchedulerOpt = Annotated[
    str | None, typer.Option(help="Dask scheduler address, tcp://HOST:PORT (--backend dask).")
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        help="trial: one model per trial; batched: a group of compatible trials as one "
        "stacked model; auto: batched where the task supports it."
    ),
]
#: most trials one worker trains together by default: with the C kernel a member's cost hardly
#: depends on its group's size, so this only needs to be large enough that workers split a
#: study's groups evenly (obesity: 216-trial groups -> 108 per worker of 2).
DEFAULT_GROUP_SIZE = 256
GroupSizeOpt = Annotated[
    int, typer.Option(help="Most trials trained together by one worker (batched).", min=1)
]
MaxMemoryOpt = Annotated[
    int, typer.Option(help="Memory budget per worker for a batched group, in MiB.", min=16)
]
LeaseOpt = Annotated[
    float,
    typer.Option(
        help="Seconds a running trial stays claimed without a heartbeat; then any worker "
        "may take it over.",
        min=2.0,
    ),
]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.")]
TableOpt = Annotated[bool, typer.Option(help="Print the study's table at the end.")]


@dataclass(frozen=True)
class _RunOptions:
    """The options shared by `run`, `resume` and `worker`."""

    workers: int | None = None
    threads: int = 1
    max_retries: int = 1
    data_dir: Path | None = None
    device: str = "cpu"
    backend: str = "local"
    scheduler: str | None = None
    executor: str = "auto"
    group_size: int = DEFAULT_GROUP_SIZE
    max_memory_mb: int = 1024
    lease_s: float = 30.0


@app.command()
def run(
    study_file: Annotated[
        Path, typer.Argument(help="The study's TOML file.", metavar="STUDY_FILE")
    ],
    db: DbOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = 1,
    max_retries: RetriesOpt = 1,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "cpu",
    backend: BackendOpt = "local",
    scheduler: SchedulerOpt = None,
    executor: ExecutorOpt = "auto",
    group_size: GroupSizeOpt = DEFAULT_GROUP_SIZE,
    max_memory: MaxMemoryOpt = 1024,
    lease: LeaseOpt = 30.0,
    progress: ProgressOpt = True,
    table: TableOpt = True,
) -> None:
    """Run a study, or finish it: completed trials are never re-run.

    Example: sweeper run studies/quick.toml --workers 2
    """
    from sweeper.spec import load_study

    study = load_study(study_file)
    opts = _RunOptions(
        workers,
        threads,
        max_retries,
        data_dir,
        device,
        backend,
        scheduler,
        executor,
        group_size,
        max_memory,
        lease,
    )
    _launch(study, db, opts, progress=progress, show_table=table)


@app.command()
def resume(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = 1,
    max_retries: RetriesOpt = 1,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "cpu",
    backend: BackendOpt = "local",
    scheduler: SchedulerOpt = None,
    executor: ExecutorOpt = "auto",
    group_size: GroupSizeOpt = DEFAULT_GROUP_SIZE,
    max_memory: MaxMemoryOpt = 1024,
    lease: LeaseOpt = 30.0,
    progress: ProgressOpt = True,
    table: TableOpt = True,
) -> None:
    """Finish a stored study, using the study as stored (no file needed).

    Example: sweeper resume obesity
    """
    from sweeper.store import Store, resolve_url

    with Store(resolve_url(db)) as store:
        study = store.study(name).study
    opts = _RunOptions(
        workers,
        threads,
        max_retries,
        data_dir,
        device,
        backend,
        scheduler,
        executor,
        group_size,
        max_memory,
        lease,
    )
    _launch(study, db, opts, progress=progress, show_table=table)


@app.command()
def worker(
    db: DbOpt = None,
    study: Annotated[
        str | None, typer.Option(help="Only this study (default: every study with work).")
    ] = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = 1,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "cpu",
    executor: ExecutorOpt = "auto",
    group_size: GroupSizeOpt = DEFAULT_GROUP_SIZE,
    max_memory: MaxMemoryOpt = 1024,
    lease: LeaseOpt = 30.0,
    wait: Annotated[
        bool, typer.Option(help="Keep polling for new work instead of exiting when done.")
    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds between polls with --wait.", min=0.1)] = 5.0,
) -> None:
    """Join the studies of a shared database from this host and work until none is left.

    Example: sweeper worker --db postgresql+psycopg://sweeper@dbhost/sweeper --workers 4
    """
    from sweeper.executors import launch_local
    from sweeper.store import Store, resolve_url

    url = _shareable(resolve_url(db))
    opts = _RunOptions(
        workers=workers,
        threads=threads,
        data_dir=data_dir,
        device=device,
        executor=executor,
        group_size=group_size,
        max_memory_mb=max_memory,
        lease_s=lease,
    )
    _check_execution(opts)
    done: set[str] = set()
    while True:
        with Store(url) as store:
            names = [study] if study is not None else store.studies_with_work()
            if study is not None:
                store.study(study)  # an unknown name is an error, not an empty queue
            for name in names:
                info = store.study(name)
                store.requeue_lost(info.id, socket.gethostname(), _pid_alive)
                open_budget = info.study.searched and len(store.proposals(info.id)) < (
                    info.study.budget or 0
                )
                left = sum(store.counts(info.id)[s] for s in ("queued", "running"))
                if left == 0 and not open_budget:
                    continue
                worker_options, mode = _worker_options(info.study, opts, None)
                out.print(f"worker: joining {name} ({mode})")
                launch_local(url, name, opts.workers, worker_options)
                done.add(name)
        if not wait:
            break
        time.sleep(poll)
    out.print(f"worker: nothing left to do (worked on {len(done)} studies)")


def _check_execution(opts: _RunOptions) -> None:
    from sweeper.executors import get_executor

    get_executor(opts.backend)
    if opts.executor not in EXECUTION_MODES:
        raise UnknownNameError(
            f"unknown executor {opts.executor!r}; choose one of: {', '.join(EXECUTION_MODES)}"
        )
    if opts.backend == "dask" and not opts.scheduler:
        raise SweeperError("--backend dask needs --scheduler tcp://HOST:PORT")
    if opts.backend != "dask" and opts.scheduler:
        raise SweeperError("--scheduler is for --backend dask; the local backend needs none")


def _worker_options(
    study: Study, opts: _RunOptions, data_dir: Path | None
) -> tuple[WorkerOptions, str]:
    """Worker options for `study`, and a few words saying how its trials will be trained."""
    from sweeper.tasks import get_task
    from sweeper.worker import WorkerOptions

    task = get_task(study.task)
    if opts.executor == "batched" and not task.supports_batching:
        raise SweeperError(
            f"task {study.task!r} cannot train trials as one batched model; "
            "use --executor trial (or auto)"
        )
    if opts.executor == "batched" and study.pruner:
        raise SweeperError(
            f"study {study.name!r} prunes trials epoch by epoch, which a batched group cannot; "
            "use --executor trial (or auto)"
        )
    batched = opts.executor != "trial" and task.supports_batching and not study.pruner
    group_size = 1
    if batched:
        # Bounded by --group-size and by the memory budget of one worker.
        per_member = max(1, task.member_bytes(_example_params(study, task)))
        group_size = max(1, min(opts.group_size, opts.max_memory_mb * 2**20 // per_member))
    options = WorkerOptions(
        data_dir=str(data_dir) if data_dir is not None else None,
        threads=opts.threads,
        device=opts.device,
        batched=batched,
        group_size=group_size,
        lease_s=opts.lease_s,
        heartbeat_s=max(1.0, opts.lease_s / 6),
    )
    mode = f"batched, groups of up to {group_size}" if batched else "one trial at a time"
    return options, mode


def _example_params(study: Study, task: Any) -> dict[str, Any]:
    """One configuration of the study, for checks made before any trial exists."""
    from sweeper.plan import grid
    from sweeper.search import example_params

    return example_params(study) if study.searched else grid(study, task.group_key)[0].params


def _shareable(url: str) -> str:
    """The URL with a relative SQLite path made absolute, for workers in other directories."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(Path(url.removeprefix(prefix)).resolve())
    return url


def _launch(
    study: Study, db: str | None, opts: _RunOptions, *, progress: bool, show_table: bool
) -> None:
    from sweeper.data import resolve_data_dir

    # Everything that can be wrong with the input is checked before the database is touched.
    from sweeper.executors import get_executor
    from sweeper.plan import grid
    from sweeper.progress import StudyProgress
    from sweeper.store import Store, resolve_url
    from sweeper.tasks import get_task

    _check_execution(opts)
    launcher = get_executor(opts.backend)
    task = get_task(study.task)
    # A searched study's trials are enqueued by its workers as the sampler proposes them.
    plan = [] if study.searched else grid(study, task.group_key)
    data = resolve_data_dir(opts.data_dir)
    task.check_data(_example_params(study, task), data)
    # Local workers get the resolved directory; remote ones resolve their own unless told.
    worker_data = data if opts.backend == "local" or opts.data_dir else None
    options, mode = _worker_options(study, opts, worker_data)
    url = resolve_url(db)

    with Store(url, create=True) as store:
        report = store.save_study(study, plan)
        planned, proposed = report.total, 0
        if study.searched:
            from sweeper.search import seed_plan

            proposals = store.proposals(report.study_id)
            proposed = len(proposals)
            report = store.save_study(study, seed_plan(study, proposals, task.group_key))
            budget = max(study.budget or 0, proposed)
            planned = report.total + (budget - proposed) * len(study.seeds)
        lost = store.requeue_lost(report.study_id, socket.gethostname(), _pid_alive)
        retried = store.requeue_failed(report.study_id, opts.max_retries)
        counts = store.counts(report.study_id)
        todo = counts["queued"] + counts["running"] + planned - report.total
        done = counts["completed"]
        notes = [f"{report.added} new" if not report.created else "new study"]
        if study.searched:
            notes = [
                f"{study.kind} search, {proposed} of {study.budget} configurations proposed "
                f"x {len(study.seeds)} seeds"
            ]
        if done:
            notes.append(f"{done} already completed")
        if lost:
            notes.append(f"{lost} re-queued from a run that ended mid-trial")
        if retried:
            notes.append(f"{retried} failed re-queued for a retry")
        where = (
            f"{opts.workers or os.cpu_count() or 1} local workers"
            if opts.backend == "local"
            else f"the Dask cluster at {opts.scheduler}"
        )
        out.print(
            f"[bold]{study.name}[/]: {planned} trials ({', '.join(notes)}); "
            f"{todo} to run on {where} ({mode})"
        )
        started = time.time()
        if todo:
            with StudyProgress(
                store,
                report.study_id,
                metric=study.metric,
                direction=study.direction,
                console=out,
                enabled=progress,
                planned=planned,
            ):
                try:
                    launcher(_shareable(url), study.name, opts.workers, options, opts.scheduler)
                except KeyboardInterrupt:
                    counts = store.counts(report.study_id)
                    err.print(
                        f"Interrupted: {counts['completed']} of {report.total} trials completed "
                        f"and saved. Run the same command again (or `sweeper resume "
                        f"{study.name}`) to finish."
                    )
                    raise typer.Exit(130) from None
        _summary(store, store.study(study.name), time.time() - started)
        if show_table and study.searched:
            _print_best(store, study.name, 10, "rich")
        elif show_table:
            _print_tables(store, study.name, "mean", "rich", None, None, None)


def _summary(store: Store, info: StudyInfo, elapsed: float) -> None:
    study = info.study
    frame = store.frame(info.id)  # one read, so the counts and the best trial agree
    counts = frame["state"].value_counts()
    left = int(counts.get("queued", 0) + counts.get("running", 0))
    pruned = int(counts.get("pruned", 0))
    out.print(
        f"{study.name}: {int(counts.get('completed', 0))} completed, "
        f"{int(counts.get('failed', 0))} failed, "
        + (f"{pruned} pruned, " if pruned else "")
        + f"{left} left; this run took {_duration(elapsed)}"
    )
    done = frame[frame["state"] == "completed"]
    if not done.empty:
        best_row = done.sort_values(
            "value", ascending=study.direction == "minimize", kind="stable"
        ).iloc[0]
        params = ", ".join(f"{k}={_short(best_row[k])}" for k in _param_names(study))
        out.print(
            f"best single trial: {study.metric} {best_row['value']:.4g} "
            f"({params}{', ' if params else ''}seed={best_row['seed']})"
        )
    failed = frame[frame["state"] == "failed"]
    if not failed.empty:
        first = str(failed.iloc[0]["error"]).strip().splitlines()[0]
        out.print(f"[red]{len(failed)} failed[/]; first error: {first}")
        out.print(f"see `sweeper runs {study.name} --state failed`")


def _short(value: Any) -> str:
    """A parameter value for one line of text: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"


# -- queries ----------------------------------------------------------------------------------


def _open(db: str | None) -> Store:
    from sweeper.store import Store, resolve_url

    return Store(resolve_url(db))


@app.command()
def studies(db: DbOpt = None, fmt: FormatOpt = "rich") -> None:
    """List the studies in the database with their progress and best value.

    Example: sweeper studies --db results.db
    """
    import pandas as pd

    with _open(db) as store:
        rows = store.studies()
    frame = pd.DataFrame(
        [
            {
                "study": s.name,
                "task": s.task,
                "kind": s.kind,
                "completed": s.counts["completed"],
                "total": sum(s.counts.values()),
                "failed": s.counts["failed"],
                "running": s.counts["running"],
                "metric": s.metric,
                "best": s.best,
                "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(s.updated_at)),
            }
            for s in rows
        ]
    )
    _print_frame(frame, fmt)


@app.command()
def status(name: Annotated[str, typer.Argument(help="Study name.")], db: DbOpt = None) -> None:
    """Show a study's progress: counts per state, timing, running and failed trials.

    Example: sweeper status obesity
    """
    with _open(db) as store:
        info = store.study(name)
        stats = store.stats(info.id, info.study.direction)
        stats_proposed = len(store.proposals(info.id)) if info.study.searched else 0
    study = info.study
    counts = stats.counts
    total = sum(counts.values())
    pct = 100.0 * counts["completed"] / total if total else 0.0
    out.print(f"[bold]{study.name}[/] (task {study.task}, {study.kind})  {study.description}")
    pruned = f", {counts['pruned']} pruned" if counts.get("pruned") else ""
    out.print(
        f"  {counts['completed']}/{total} completed ({pct:.0f}%), {counts['failed']} failed"
        f"{pruned}, {counts['running']} running, {counts['queued']} queued"
    )
    if study.searched:
        out.print(
            f"  search: {study.kind}, {stats_proposed} of {study.budget} configurations "
            f"proposed (sampler seed {study.sampler_seed}, pruner {study.pruner or 'none'}, "
            f"{study.aggregate} over seeds)"
        )
        out.print(f"  searched: {', '.join(study.search)}; seeds: {list(study.seeds)}")
    else:
        axes = ", ".join(f"{k} ({len(v)})" for k, v in study.axes.items())
        out.print(f"  axes: {axes}; seeds: {list(study.seeds)}")
    if stats.mean_duration is not None:
        wall = (stats.last_finish or 0.0) - (stats.first_start or 0.0)
        # Not a sum of durations: members of a batched group share their group's time.
        out.print(
            f"  wall time {_duration(wall)}; claim to result {stats.mean_duration:.2f}s per "
            "trial on average (batched trials share their group's)"
        )
    if stats.best is not None:
        out.print(f"  best {study.metric}: {stats.best:.4g}")
    for trial_id, host, pid in stats.running:
        out.print(f"  running: trial {trial_id} on {host} pid {pid}")
    for trial_id, attempts, error in stats.failed:
        first = error.strip().splitlines()[0] if error else ""
        out.print(f"  failed: trial {trial_id} after {attempts} attempt(s): {first}")


@app.command()
def runs(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", "-w", help="Filter KEY=VALUE (repeatable).")
    ] = None,
    state: Annotated[str | None, typer.Option(help="Only trials in this state.")] = None,
    sort: Annotated[str | None, typer.Option(help="Sort by this column (e.g. a metric).")] = None,
    desc: Annotated[bool, typer.Option(help="Sort descending.")] = False,
    limit: Annotated[int | None, typer.Option(help="Show at most this many.", min=1)] = None,
    fmt: FormatOpt = "rich",
) -> None:
    """List a study's trials, filtered and sorted.

    Example: sweeper runs obesity --where optimizer=adam --where sam_rho=0.05 --sort test_mse
    """
    with _open(db) as store:
        info = store.study(name)
        frame = store.frame(info.id)
    study = info.study
    frame = _filter(frame, where or [], state)
    if sort is not None:
        _check_column(frame, sort, "--sort")
        frame = frame.sort_values(sort, ascending=not desc, kind="stable", na_position="last")
    metrics = [m for m in frame.attrs.get("metrics", []) if m in frame.columns]
    cols = ["id", "state", *_param_names(study), "seed", *metrics, "duration", "attempts", "host"]
    frame = frame[[c for c in cols if c in frame.columns]]
    if limit is not None:
        frame = frame.head(limit)
    _print_frame(frame, fmt)


@app.command()
def best(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    top: Annotated[int, typer.Option(help="How many configurations.", min=1)] = 10,
    fmt: FormatOpt = "rich",
) -> None:
    """Rank configurations by their mean over seeds (with sem and the number of seeds).

    A searched study's configurations are those its sampler proposed.

    Example: sweeper best obesity --top 5
    """
    with _open(db) as store:
        _print_best(store, name, top, fmt)


def _print_best(store: Store, name: str, top: int, fmt: str) -> None:
    from sweeper.report import best_configs, observed_axes

    info = store.study(name)
    frame = _metric_frame(store, info)
    study = info.study
    axes = observed_axes(frame, list(study.search)) if study.searched else study.axes
    ranked = best_configs(frame, axes=axes, metric=study.metric, direction=study.direction, top=top)
    _print_frame(ranked, fmt)


@app.command()
def importance(
    name: Annotated[str, typer.Argument(help="Study name (a searched study).")],
    db: DbOpt = None,
    fmt: FormatOpt = "rich",
) -> None:
    """Print Optuna's parameter importances (fANOVA) over the completed configurations,
    each judged by its seed aggregate.

    Example: sweeper importance obesity_tpe
    """
    import pandas as pd

    from sweeper import search

    with _open(db) as store:
        info = store.study(name)
        study = info.study
        if not study.searched:
            raise SweeperError(
                f"study {name!r} is a grid; importances are for searched studies (kind tpe or "
                "random). For a grid, compare its tables: sweeper table " + name
            )
        history = search.summarize(study, store.proposals(info.id), store.search_trials(info.id))
    values = search.importances(study, history)
    done = sum(c.state == search.COMPLETE for c in history)
    frame = pd.DataFrame({"parameter": list(values), "importance": list(values.values())})
    if fmt == "rich":
        out.print(f"{name}: importance for {study.metric} over {done} completed configurations")
    _print_frame(frame, fmt)


@app.command("table")
def table_cmd(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    agg: Annotated[
        str, typer.Option(help="Aggregate over seeds: mean, std, sem, min, max, count.")
    ] = "mean",
    fmt: FormatOpt = "rich",
    rows: Annotated[str | None, typer.Option(help="Row axis (default lr).")] = None,
    cols: Annotated[str | None, typer.Option(help="Column axis (default weight_decay).")] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(help="Axes that split tables (default: the other axes). Repeatable."),
    ] = None,
    bins: Annotated[
        int, typer.Option(help="Searched studies: bins per numeric parameter.", min=1)
    ] = 4,
    layout: Annotated[
        str,
        typer.Option(
            help="grid: the averaged grids; domains: rows the methods, columns the held-out "
            "domains and their average (domain-generalization studies)."
        ),
    ] = "grid",
    sem: Annotated[bool, typer.Option(help="--layout domains: show mean ± sem.")] = False,
) -> None:
    """Print the averaged grids: one table per (optimizer, SAM rho), rows lr, columns weight
    decay, cells the mean over seeds, the best cell marked, incomplete cells showing n/expected.

    For a searched study each numeric parameter is binned (--bins); numeric parameters neither
    shown nor grouped on are pooled, categorical ones split tables.

    With --layout domains (a domain-generalization study such as ecg_small): rows the methods
    (--rows, default method), columns the held-out domains (--cols, default target) and their
    average, cells the mean over seeds (--sem adds ± sem), the best row of each column marked.

    Example: sweeper table obesity --format markdown

    Example: sweeper table ecg_small --layout domains --sem
    """
    layouts = ("grid", "domains")
    if layout not in layouts:
        raise UnknownNameError(f"unknown layout {layout!r}; choose one of: {', '.join(layouts)}")
    with _open(db) as store:
        if layout == "domains":
            _print_domain_tables(store, name, fmt, rows, cols, group, agg=agg, sem=sem)
            return
        _print_tables(store, name, agg, fmt, rows, cols, group, bins)


def _print_tables(
    store: Store,
    name: str,
    agg: str,
    fmt: str,
    rows: str | None,
    cols: str | None,
    group: list[str] | None,
    bins: int = 4,
) -> None:
    from sweeper import render
    from sweeper.report import binned_axes, grid_tables

    render.check_format(fmt)
    info = store.study(name)
    study = info.study
    frame = _metric_frame(store, info)
    all_axes: dict[str, list[Any]] = dict(study.axes)
    seeds = list(study.seeds)
    if study.searched:
        frame, all_axes = binned_axes(frame, study.search, bins)
        seeds = []  # a bin holds as many trials as the sampler put there: nothing is missing
    axes = list(all_axes)
    if not axes:
        raise SweeperError(f"study {name!r} has no sweep axes to tabulate; use `sweeper runs`")
    row_axis = rows or ("lr" if "lr" in axes else axes[0])
    rest = [a for a in axes if a != row_axis]
    col_axis = cols or ("weight_decay" if "weight_decay" in rest else (rest[0] if rest else None))
    if study.searched and group is None:
        shown = {row_axis, col_axis}
        group = [a for a in axes if a not in shown and study.search[a]["type"] == "categorical"]
    tables = grid_tables(
        frame,
        axes=all_axes,
        seeds=seeds,
        metric=study.metric,
        direction=study.direction,
        rows=row_axis,
        cols=col_axis,
        groups=group,
        agg=agg,
    )
    expected = tables[0].expected if tables else 0
    title = (
        f"{study.name}: {study.metric} ({study.direction}), {agg} over seeds "
        f"(a complete cell holds {expected} trials)"
    )
    if study.searched:
        title = (
            f"{study.name}: {study.metric} ({study.direction}), {agg} over the trials in each "
            f"bin ({study.kind} search; --agg count shows how many)"
        )
    title += _data_note(study)
    if fmt == "rich":
        for t in render.rich_tables(tables, title=title):
            out.print(t)
    else:
        sys.stdout.write(render.render_tables(tables, fmt, title=title))


def _data_note(study: Study) -> str:
    """A title suffix labelling a study run on synthetic data (its ``dataset`` parameter)."""
    datasets = [study.fixed.get("dataset"), *study.axes.get("dataset", [])]
    return " [SYNTHETIC data, not real ECGs]" if "synthetic" in datasets else ""


def _print_domain_tables(
    store: Store,
    name: str,
    fmt: str,
    rows: str | None,
    cols: str | None,
    group: list[str] | None,
    *,
    agg: str,
    sem: bool,
) -> None:
    """`sweeper table NAME --layout domains`: methods x held-out domains, plus Avg."""
    from sweeper import render
    from sweeper.report import domain_tables

    render.check_format(fmt)
    if agg != "mean":
        raise SweeperError(
            "--layout domains shows the mean over seeds (add --sem for ± sem); "
            "--agg is for --layout grid"
        )
    info = store.study(name)
    study = info.study
    axes = list(study.axes)
    row_axis = rows or "method"
    col_axis = cols or "target"
    for option, axis in (("--rows", row_axis), ("--cols", col_axis)):
        if axis not in axes:
            raise SweeperError(
                f"--layout domains: study {name!r} has no axis {axis!r} for {option}; "
                f"its axes: {', '.join(axes) or '(none)'}"
            )
    tables = domain_tables(
        _metric_frame(store, info),
        axes=study.axes,
        seeds=list(study.seeds),
        metric=study.metric,
        direction=study.direction,
        rows=row_axis,
        cols=col_axis,
        groups=group,
    )
    expected = tables[0].expected if tables else 0
    shown = "mean ± sem" if sem else "mean"
    title = (
        f"{study.name}: {study.metric} ({study.direction}) on the held-out {col_axis}, {shown} "
        f"over seeds (a complete cell holds {expected} trials); Avg = mean of the "
        f"{len(study.axes[col_axis])} domain columns{_data_note(study)}"
    )
    if fmt == "rich":
        for t in render.rich_domain_tables(tables, title=title, sem=sem):
            out.print(t)
    else:
        sys.stdout.write(render.render_domain_tables(tables, fmt, title=title, sem=sem))


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, json or parquet.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    curves: Annotated[bool, typer.Option(help="Include per-epoch curves (json only).")] = False,
) -> None:
    """Export every trial of a study: parameters, seed, state, metrics, timing, host.

    Example: sweeper export obesity --format parquet -o obesity.parquet
    """
    formats = ("csv", "json", "parquet")
    if fmt not in formats:
        raise UnknownNameError(f"unknown export format {fmt!r}; choose one of: csv, json, parquet")
    if fmt == "parquet" and output is None:
        raise SweeperError("parquet is binary: give a file with --output FILE")
    if curves and fmt != "json":
        raise SweeperError("--curves needs --format json (curves are lists per trial)")
    with _open(db) as store:
        info = store.study(name)
        frame = store.frame(info.id)
        if curves:
            by_id = store.curves(frame["id"].tolist())
            frame["curves"] = [by_id.get(i) for i in frame["id"]]
    frame.insert(0, "study", info.name)
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = frame.to_json(orient="records", indent=1) + "\n"
    else:
        assert output is not None
        try:
            frame.to_parquet(output, index=False)
        except ImportError:
            raise SweeperError(
                "parquet export needs pyarrow: pip install 'sweeper[parquet]'"
            ) from None
        err.print(f"wrote {len(frame)} trials to {output}")
        return
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {len(frame)} trials to {output}")


# -- datasets ---------------------------------------------------------------------------------

data_app = typer.Typer(
    name="data",
    help="Datasets: generate the synthetic ECG set.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(data_app, name="data")


@data_app.command("synth-ecg")
def synth_ecg(
    out_dir: Annotated[
        Path,
        typer.Argument(
            help="Directory to write (new, empty, or an older synthetic set).", metavar="OUT"
        ),
    ],
    records_per_domain: Annotated[
        int, typer.Option(help="Records per domain (six domains).", min=1)
    ] = 100,
    seed: Annotated[int, typer.Option(help="Dataset seed.", min=0)] = 0,
    shift_strength: Annotated[
        float, typer.Option(help="Scale of the per-domain device shift (0: none).", min=0.0)
    ] = 1.0,
    prevalence_floor: Annotated[
        float,
        typer.Option(help="Least probability of every class in every domain.", min=0.0, max=0.49),
    ] = 0.1,
) -> None:
    """Write a SYNTHETIC six-domain 12-lead ECG dataset in the PhysioNet/CinC 2021 format
    (<Domain>/<id>.hea + .mat), deterministic in its options, for the ECG study.

    The ECG study reads it from <data dir>/ecg_synth (data dir: --data-dir, $SWEEPER_DATA_DIR,
    else ~/.cache/sweeper/data).

    Example: sweeper data synth-ecg ~/.cache/sweeper/data/ecg_synth --records-per-domain 100
    """
    import pandas as pd

    from sweeper import render
    from sweeper.ecg.synth import write_dataset

    def progress(domain: str, done: int) -> None:
        if done == records_per_domain:
            err.print(f"  {domain}: {done} records")

    started = time.time()
    report = write_dataset(
        out_dir,
        records_per_domain=records_per_domain,
        seed=seed,
        shift_strength=shift_strength,
        prevalence_floor=prevalence_floor,
        progress=progress,
    )
    frame = pd.DataFrame(report.class_counts).T.rename_axis("domain").reset_index()
    out.print(
        f"wrote {sum(report.records.values())} SYNTHETIC records ({len(report.records)} domains "
        f"x {records_per_domain}, seed {seed}) to {report.path}: {report.bytes / 1e6:.1f} MB "
        f"in {_duration(time.time() - started)}. Records per class:"
    )
    out.print(render.rich_frame(frame))


# -- helpers ----------------------------------------------------------------------------------


def _param_names(study: Study) -> list[str]:
    """The parameters that vary between a study's configurations."""
    return list(study.search) if study.searched else list(study.axes)


def _metric_frame(store: Store, info: StudyInfo) -> pd.DataFrame:
    """The study's trials with only its own metric, read from the indexed `value` column."""
    frame = store.frame(info.id, metrics=False, bookkeeping=False)
    frame[info.study.metric] = frame["value"]
    return frame


def _filter(frame: pd.DataFrame, where: list[str], state: str | None) -> pd.DataFrame:
    for clause in where:
        key, sep, raw = clause.partition("=")
        if not sep or not key:
            raise SweeperError(f"--where {clause!r}: write KEY=VALUE, e.g. --where optimizer=adam")
        _check_column(frame, key, "--where")
        value = _parse_value(raw)
        column = frame[key]
        if isinstance(value, float | int) and not isinstance(value, bool):
            frame = frame[column.astype(float) == float(value)]
        else:
            frame = frame[column.astype(str) == str(value)]
    if state is not None:
        from sweeper.schema import STATES

        if state not in STATES:
            raise UnknownNameError(f"unknown state {state!r}; choose one of: {', '.join(STATES)}")
        frame = frame[frame["state"] == state]
    return frame


def _parse_value(raw: str) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return value if isinstance(value, int | float | bool) else raw


def _check_column(frame: pd.DataFrame, key: str, option: str) -> None:
    if key not in frame.columns:
        raise SweeperError(
            f"{option} {key!r}: no such column; choose one of: {', '.join(map(str, frame.columns))}"
        )


def _print_frame(frame: pd.DataFrame, fmt: str) -> None:
    from sweeper import render

    if fmt == "rich":
        out.print(render.rich_frame(frame))
    else:
        sys.stdout.write(render.render_frame(frame, fmt))


def main() -> None:
    """Console entry point: run the app, turning library errors into one line and an exit code."""
    argv = sys.argv[1:]
    debug = "--debug" in argv or os.environ.get("SWEEPER_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    try:
        # Typer handles usage errors itself (exit 2) and Ctrl-C outside a run (exit 1).
        app(args=argv, prog_name="sweeper")
    except SweeperError as exc:
        if debug:
            raise
        for line in str(exc).splitlines() or [type(exc).__name__]:
            sys.stderr.write(f"Error: {line}\n")
        sys.exit(1)
    except Exception as exc:
        if debug:
            raise
        sys.stderr.write(
            f"Error: unexpected {type(exc).__name__}: {exc}\n(run again with --debug for a "
            "traceback, and please report it)\n"
        )
        sys.exit(1)


__all__ = ["StoreError", "app", "main"]
