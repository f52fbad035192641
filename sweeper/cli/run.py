"""`sweeper run`, `sweeper resume` and `sweeper worker`: faces of `sweeper.launch.run`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sweeper.cli.app import (
    DEFAULT_GROUP_SIZE,
    DEFAULT_LEASE_S,
    BackendOpt,
    CodeChangedOpt,
    DataDirOpt,
    DbOpt,
    DeviceOpt,
    GroupSizeOpt,
    LeaseOpt,
    MaxMemoryOpt,
    ModeOpt,
    ProgressOpt,
    RetriesOpt,
    SchedulerOpt,
    TableOpt,
    ThreadsOpt,
    WorkersOpt,
    command,
    err,
    out,
)
from sweeper.cli.output import duration, short
from sweeper.cli.progress import DEFAULT_EVERY_S
from sweeper.launch.options import DEFAULT_MAX_TRIALS, RunOptions

if TYPE_CHECKING:
    from sweeper.launch.run import RunSummary, Started
    from sweeper.store import Store
    from sweeper.study import Study

MaxTrialsOpt = Annotated[
    int,
    typer.Option(
        help="Refuse a study that plans more trials than this (a grid's configurations times "
        "its seeds, a search's budget times its seeds).",
        min=1,
    ),
]
ForceWorkersOpt = Annotated[
    bool,
    typer.Option(
        "--force-workers",
        help="Start more local workers (times --threads) than 4 per core.",
    ),
]
ProgressEveryOpt = Annotated[
    float,
    typer.Option(
        "--progress-every",
        envvar="SWEEPER_PROGRESS_EVERY",
        help="Outside a terminal (stderr not a TTY), instead of a bar: one progress line on "
        "stderr every this many seconds, and a last one when done.",
        min=0.5,
        metavar="SECONDS",
    ),
]
CheckpointEveryOpt = Annotated[
    float,
    typer.Option(
        "--checkpoint-every",
        help="Save a running trial's training state every this many seconds, so that a killed "
        "run resumes it there (ecg, obesity, trial.checkpoint); 0: never. Where: "
        "$SWEEPER_CHECKPOINT_DIR, else $SWEEPER_CACHE_DIR/checkpoints, else "
        "~/.cache/sweeper/checkpoints.",
        min=0,
        metavar="SECONDS",
    ),
]

#: the exit code of a run that finished with failed trials in its study; the others: 1 an
#: error (`sweeper.cli.app.command`), 2 usage (Typer), 130/143 a signal (`launch.signals`).
#: `run` and `resume` list them in their help, where the CLI reference reads them.
EXIT_TRIALS_FAILED = 3
#: most distinct errors the end-of-run summary names.
MAX_REASONS = 5


@command()
def run(
    study_files: Annotated[
        list[Path],
        typer.Argument(
            help="The study's TOML file, or a packaged study's name (quick, obesity, ...); "
            "several run one after the other on the same workers, started once.",
            metavar="STUDY_FILE...",
        ),
    ],
    db: DbOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = 1,
    max_retries: RetriesOpt = 1,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "cpu",
    backend: BackendOpt = "local",
    scheduler: SchedulerOpt = None,
    mode: ModeOpt = "auto",
    group_size: GroupSizeOpt = DEFAULT_GROUP_SIZE,
    max_memory: MaxMemoryOpt = 1024,
    lease: LeaseOpt = DEFAULT_LEASE_S,
    code_changed: CodeChangedOpt = "refuse",
    max_trials: MaxTrialsOpt = DEFAULT_MAX_TRIALS,
    force_workers: ForceWorkersOpt = False,
    checkpoint_every: CheckpointEveryOpt = 60.0,
    progress: ProgressOpt = True,
    progress_every: ProgressEveryOpt = DEFAULT_EVERY_S,
    table: TableOpt = True,
) -> None:
    """Run a study, or finish it: completed trials are never re-run.

    Progress goes to stderr (a bar in a terminal, else a line every --progress-every
    seconds), the summary and the study's table to stdout.

    Example: sweeper run studies/quick.toml --workers 2

    Several studies (sweeper run obesity obesity_sam200) are all checked before any is
    touched, then run by the same workers, each once the one before has nothing queued.

    Exit codes: 0 every trial completed; 1 an error (nothing run, or the run stopped); 2 a
    usage error; 3 the run finished but trials of the study failed (their errors, grouped, on
    stderr); 130 interrupted by Ctrl-C, 143 by SIGTERM (the trials in flight back in the queue).
    """
    from sweeper.studies import resolve
    from sweeper.study import load_study

    studies = [load_study(resolve(f)) for f in study_files]
    names = [s.name for s in studies]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise typer.BadParameter(
            f"study {', '.join(map(repr, twice))} given more than once (each study file names "
            "its study; run a study once per command)",
            param_hint="STUDY_FILE...",
        )
    options = RunOptions(
        workers, threads, max_retries, data_dir, device, backend, scheduler, mode,
        group_size, max_memory, lease, code_changed, max_trials, force_workers,
        checkpoint_every_s=checkpoint_every,
    )  # fmt: skip
    _run(studies, db, options, progress=progress, every=progress_every, show_table=table)


@command()
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
    mode: ModeOpt = "auto",
    group_size: GroupSizeOpt = DEFAULT_GROUP_SIZE,
    max_memory: MaxMemoryOpt = 1024,
    lease: LeaseOpt = DEFAULT_LEASE_S,
    code_changed: CodeChangedOpt = "refuse",
    max_trials: MaxTrialsOpt = DEFAULT_MAX_TRIALS,
    force_workers: ForceWorkersOpt = False,
    checkpoint_every: CheckpointEveryOpt = 60.0,
    progress: ProgressOpt = True,
    progress_every: ProgressEveryOpt = DEFAULT_EVERY_S,
    table: TableOpt = True,
) -> None:
    """Finish a stored study, using the study as stored (no file needed).

    Output as for `sweeper run`.

    Example: sweeper resume obesity

    Exit codes: 0 every trial completed; 1 an error (nothing run, or the run stopped); 2 a
    usage error; 3 the run finished but trials of the study failed (their errors, grouped, on
    stderr); 130 interrupted by Ctrl-C, 143 by SIGTERM (the trials in flight back in the queue).
    """
    from sweeper.cli.output import open_store

    with open_store(db) as store:
        study = store.study(name).study
    options = RunOptions(
        workers, threads, max_retries, data_dir, device, backend, scheduler, mode,
        group_size, max_memory, lease, code_changed, max_trials, force_workers,
        checkpoint_every_s=checkpoint_every,
    )  # fmt: skip
    _run([study], db, options, progress=progress, every=progress_every, show_table=table)


@command()
def worker(
    db: DbOpt = None,
    study: Annotated[
        str | None, typer.Option(help="Only this study (default: every study with work).")
    ] = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = 1,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "cpu",
    mode: ModeOpt = "auto",
    group_size: GroupSizeOpt = DEFAULT_GROUP_SIZE,
    max_memory: MaxMemoryOpt = 1024,
    lease: LeaseOpt = DEFAULT_LEASE_S,
    force_workers: ForceWorkersOpt = False,
    checkpoint_every: CheckpointEveryOpt = 60.0,
    wait: Annotated[
        bool, typer.Option(help="Keep polling for new work instead of exiting when done.")
    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds between polls with --wait.", min=0.1)] = 5.0,
    progress: ProgressOpt = True,
    progress_every: ProgressEveryOpt = DEFAULT_EVERY_S,
) -> None:
    """Join the studies of a shared database from this host and work until none is left.

    Example: sweeper worker --db postgresql+psycopg://sweeper@dbhost/sweeper --workers 4

    Exit codes: 0 nothing left to do and no failed trial in the studies it worked on; 1 an
    error; 2 a usage error; 3 it finished but a study it worked on has failed trials (their
    errors, grouped, on stderr); 130 interrupted by Ctrl-C, 143 by SIGTERM (the trials in
    flight back in the queue).
    """
    from sweeper.cli.console import quiet
    from sweeper.cli.progress import StudyProgress, Watched
    from sweeper.launch.run import work

    options = RunOptions(
        workers=workers,
        threads=threads,
        data_dir=data_dir,
        device=device,
        mode=mode,
        group_size=group_size,
        max_memory_mb=max_memory,
        lease_s=lease,
        force_workers=force_workers,
        checkpoint_every_s=checkpoint_every,
    )
    try:
        done = work(
            db,
            study,
            options,
            wait=wait,
            poll_s=poll,
            on_join=lambda name, how: out.print(f"worker: joining {name} ({how})"),
            on_event=_print_event,
            around=lambda store, info: StudyProgress(
                store,
                [Watched(info.id, info.study.name, info.study.metric, info.study.direction)],
                console=err,
                enabled=progress and not quiet(),
                every=progress_every,
            ),
        )
    except KeyboardInterrupt as exc:
        text = "the trials in flight went back to the queue. Run `sweeper worker` again to go on."
        raise typer.Exit(_interrupted(exc, text)) from None
    out.print(f"worker: nothing left to do (worked on {len(done)} studies)")
    _exit_if_failed(db, done)


def _exit_if_failed(db: str | None, names: Sequence[str]) -> None:
    """Sum up the failed trials of the studies `names` on stderr, and exit with
    `EXIT_TRIALS_FAILED` if there are any (a job scheduler then sees the failure)."""
    from sweeper.launch.run import summarize
    from sweeper.store import resolve_url

    url = resolve_url(db)
    failed = [s for s in (summarize(url, name) for name in names) if s.failed]
    for summary in failed:
        err.print(failure_summary(summary), markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(EXIT_TRIALS_FAILED)


def _run(
    studies: Sequence[Study],
    db: str | None,
    options: RunOptions,
    *,
    progress: bool,
    every: float,
    show_table: bool,
) -> None:
    """Run the `studies` (on the same workers, in order) and report on each: progress on
    stderr, the summaries and tables on stdout.

    Every study is checked before any is saved or queued (`sweeper.launch.run.start_all`).

    Raises:
        typer.Exit: with `EXIT_TRIALS_FAILED` when a study has failed trials at the end (its
            errors summed up on stderr), with 130 or 143 when a signal stopped the run.
    """
    from sweeper.cli.console import quiet
    from sweeper.cli.progress import StudyProgress, Watched
    from sweeper.launch.run import execute, start_all, summarize
    from sweeper.store import Store

    started = start_all(studies, db, options)
    for study, s in zip(studies, started, strict=True):
        out.print(
            f"[bold]{study.name}[/]: {s.planned} trials ({', '.join(s.notes)}); "
            f"{s.todo} to run on {s.where} ({s.mode})"
        )
    began = time.time()
    todo = [s for s in started if s.todo]
    if todo:
        first, rest = todo[0], todo[1:]
        watched = [
            Watched(s.study_id, s.study.name, s.study.metric, s.study.direction, s.planned)
            for s in todo
        ]
        with (
            Store(first.url) as store,
            StudyProgress(
                store,
                watched,
                console=err,
                enabled=progress and not quiet(),
                every=every,
            ),
        ):
            try:
                execute(first, on_event=_print_event, then=rest)
            except KeyboardInterrupt as exc:
                # The workers put the trials they were running back (attempts unchanged).
                raise typer.Exit(_interrupted(exc, _saved_text(store, todo))) from None
    elapsed = time.time() - began
    summaries = [summarize(s.url, s.study.name, elapsed) for s in started]
    for study, s, summary in zip(studies, started, summaries, strict=True):
        _print_summary(summary)
        if show_table:
            _print_table(study, s.url)
    failed = [summary for summary in summaries if summary.failed]
    for summary in failed:
        # Last, so that it is what a terminal shows at the end and what a log's tail holds.
        err.print(failure_summary(summary), markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(EXIT_TRIALS_FAILED)


def _saved_text(store: Store, started: Sequence[Started]) -> str:
    """What an interrupted run kept, and how to finish."""
    saved = []
    for s in started:
        counts = store.counts(s.study_id)
        of = f" of {s.study.name}" if len(started) > 1 else ""
        saved.append(f"{counts['completed']} of {s.stored} trials{of}")
    resume = f" (or `sweeper resume {started[0].study.name}`)" if len(started) == 1 else ""
    return f"{'; '.join(saved)} completed and saved. Run the same command again{resume} to finish."


def _print_table(study: Study, url: str) -> None:
    """The study's table: a search's best configurations, a grid's averaged grids; nothing for
    a grid without axes (one configuration: the summary's best trial says it all)."""
    from sweeper.cli.output import open_store
    from sweeper.cli.query import print_best
    from sweeper.cli.table import print_grid_tables

    if not study.searched and not study.axes:
        return
    with open_store(url) as store:
        if study.searched:
            print_best(store, study.name, 10, "rich")
        else:
            print_grid_tables(store, study.name, "mean", "rich", None, None, None)


def _interrupted(exc: KeyboardInterrupt, text: str) -> int:
    """Say on stderr that a signal stopped the run (``Interrupted by SIGTERM: TEXT``); the exit
    code a shell expects: 130 for Ctrl-C, 143 for SIGTERM."""
    from sweeper.launch.signals import Interrupted, exit_code

    name = exc.name if isinstance(exc, Interrupted) else "SIGINT"
    by = "" if name == "SIGINT" else f" by {name}"
    err.print(f"Interrupted{by}: {text}", soft_wrap=True, markup=False, highlight=False)
    return exit_code(exc)


def _print_event(line: str) -> None:
    """What happened to a worker (it died, its trials went back): one line on stderr."""
    err.print(line, markup=False, highlight=False, soft_wrap=True)


def _print_summary(summary: RunSummary) -> None:
    pruned = f"{summary.pruned} pruned, " if summary.pruned else ""
    out.print(
        f"{summary.name}: {summary.completed} completed, {summary.failed} failed, "
        f"{pruned}{summary.left} left; this run took {duration(summary.elapsed)}"
    )
    best = summary.best
    if best is not None:
        params = ", ".join(f"{k}={short(v)}" for k, v in best["params"].items())
        seeds = f"mean of {best['n']} seed{'s' if best['n'] != 1 else ''}"
        out.print(
            f"best: {summary.metric} {best['value']:.4g} ({seeds})"
            + (f" at {params}" if params else "")
        )


def failure_summary(summary: RunSummary) -> str:
    """The failed trials of a study in one line, grouped by the first line of their error (the
    `MAX_REASONS` most frequent named), and where to read more, e.g.::

        3 trials failed: ValueError: lr too large (2), RuntimeError: nan loss (1); see
        `sweeper show quick 7` (the first) or `sweeper runs quick --state failed`
    """
    shown = summary.errors[:MAX_REASONS]
    reasons = ", ".join(f"{line} ({n})" for line, n in shown)
    hidden = summary.errors[MAX_REASONS:]
    if hidden:
        n_hidden = sum(n for _, n in hidden)
        other = "other error" if len(hidden) == 1 else f"{len(hidden)} other errors"
        reasons += f", {other} ({n_hidden})"
    trials = "1 trial" if summary.failed == 1 else f"{summary.failed} trials"
    first = ""
    if summary.first_failed is not None:
        first = f"`sweeper show {summary.name} {summary.first_failed}` (the first) or "
    return f"{trials} failed: {reasons}; see {first}`sweeper runs {summary.name} --state failed`"
