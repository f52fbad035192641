"""A run's progress, read from the database so it counts every worker's results, wherever run:
a Rich bar in a terminal, one plain line every few seconds elsewhere (a log, CI, a pipe)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sweeper.cli.output import duration

if TYPE_CHECKING:
    from sweeper.store import Store

#: seconds between two plain progress lines unless --progress-every says otherwise.
DEFAULT_EVERY_S = 10.0


@dataclass(frozen=True)
class Snapshot:
    """A study's counts at one moment, as a progress line shows them.

    Attributes:
        done: trials finished either way (completed, failed or pruned).
        total: trials the study holds when done.
        best: the best completed value so far, or None.
    """

    done: int
    total: int
    failed: int
    pruned: int
    running: int
    best: float | None


def progress_line(name: str, now: Snapshot, elapsed: float, done_before: int, metric: str) -> str:
    """One line of progress, e.g. ``quick: 12/32 done, 0 failed, 2 running, 6.1s elapsed, eta
    10.2s, best test_mse 0.81``; the ETA is this run's pace (``done_before`` trials were done
    when it began), ``-`` before its first trial ends."""
    pace = (now.done - done_before) / elapsed if elapsed > 0 else 0.0
    left = max(now.total - now.done, 0)
    eta = duration(left / pace) if pace > 0 else ("0.0s" if left == 0 else "-")
    pruned = f"{now.pruned} pruned, " if now.pruned else ""
    best = f"{metric} {now.best:.4g}" if now.best is not None else "-"
    return (
        f"{name}: {now.done}/{now.total} done, {now.failed} failed, {pruned}{now.running} "
        f"running, {duration(elapsed)} elapsed, eta {eta}, best {best}"
    )


def interactive(console: Console) -> bool:
    """Whether `console` writes to a terminal that can redraw a bar.

    The file's own ``isatty``, not Rich's guess: CI sets FORCE_COLOR for colours in its logs,
    where a redrawn bar is only noise.
    """
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(isatty is not None and isatty()) and not console.is_dumb_terminal
    except ValueError:  # a closed stream
        return False


@dataclass(frozen=True)
class Watched:
    """A study a progress display follows. `planned`: the trials it will hold when done, when
    more than are stored yet (a searched study enqueues its configurations as it goes)."""

    study_id: int
    name: str
    metric: str
    direction: str
    planned: int | None = None


@dataclass
class _Row:
    """What the display remembers of one study between two polls."""

    study: Watched
    done_before: int = 0
    best: float | None = None
    best_for: int = -1
    best_next: float = 0.0
    task: TaskID | None = None


class StudyProgress:
    """Poll the study's counts and show done/total, failures, running trials, ETA, best so far.

    In a terminal (`interactive`), a Rich bar redrawn every `interval` seconds; elsewhere, one
    `progress_line` every `every` seconds and a last one on exit. Use as a context manager
    around the executor; trials done before it starts (a resumed run) count as done but not
    towards the pace, so the ETA reflects this run's speed only. Several `studies` (the same
    workers run them one after the other): one bar each, or one line each for those being
    worked on.
    """

    def __init__(
        self,
        store: Store,
        studies: Sequence[Watched],
        *,
        console: Console,
        enabled: bool = True,
        interval: float = 0.5,
        every: float = DEFAULT_EVERY_S,
    ) -> None:
        self.store = store
        self.rows = [_Row(w) for w in studies]
        self.console = console
        self.enabled = enabled
        self.bar = enabled and interactive(console)
        self.interval = interval if self.bar else every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._began = time.monotonic()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("running {task.fields[running]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("best {task.fields[best]}"),
            console=console,
            disable=not self.bar,
        )

    def __enter__(self) -> StudyProgress:
        if not self.enabled:
            return self
        nows = [self.snapshot(row) for row in self.rows]
        self._began = time.monotonic()
        for row, now in zip(self.rows, nows, strict=True):
            row.done_before = now.done
            if self.bar:
                label = "trials" if len(self.rows) == 1 else row.study.name
                row.task = self.progress.add_task(label, total=now.total, completed=now.done)
                self._draw(row, now)
        if self.bar:
            self.progress.start()
        self._thread = threading.Thread(target=self._poll, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.enabled:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._show(final=True)
        except Exception:  # noqa: BLE001 - a busy database costs the last line, never the run
            pass
        finally:
            self.progress.stop()

    def snapshot(self, row: _Row, *, final: bool = False) -> Snapshot:
        """The study's counts and best value now (two reads of the database).

        The best seed mean groups every completed trial (0.2 s at 100,000 trials), so it is
        read again only when trials completed since, and at most once per ten times what the
        last read took (the display may lag on huge studies, the run does not)."""
        study = row.study
        counts = self.store.counts(study.study_id)
        now = time.monotonic()
        if counts["completed"] != row.best_for and (final or now >= row.best_next):
            row.best = self.store.best_value(study.study_id, study.direction)
            took = time.monotonic() - now
            row.best_for, row.best_next = counts["completed"], now + 10 * took
        return Snapshot(
            done=counts["completed"] + counts["failed"] + counts["pruned"],
            total=max(sum(counts.values()), study.planned or 0),
            failed=counts["failed"],
            pruned=counts["pruned"],
            running=counts["running"],
            best=row.best,
        )

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._show()
            except Exception:  # noqa: BLE001 - a busy database only delays the next update
                continue

    def _show(self, *, final: bool = False) -> None:
        lines = []
        for row in self.rows:
            now = self.snapshot(row, final=final)
            if self.bar:
                self._draw(row, now)
                continue
            # With several studies, a tick shows those being worked on (or else the next one);
            # each says it is done in the last lines.
            active = now.done < now.total and (now.running > 0 or now.done > row.done_before)
            waiting = now.done < now.total and not active
            elapsed = time.monotonic() - self._began
            text = progress_line(row.study.name, now, elapsed, row.done_before, row.study.metric)
            lines.append((text, final or len(self.rows) == 1 or active, waiting))
        shown = [text for text, show, _ in lines if show]
        if not shown:
            shown = [text for text, _, waiting in lines if waiting][:1]
        for text in shown:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _draw(self, row: _Row, now: Snapshot) -> None:
        if row.task is None:
            return
        best = f"{row.study.metric} {now.best:.4g}" if now.best is not None else "-"
        self.progress.update(
            row.task,
            total=now.total,
            completed=now.done,
            failed=now.failed,
            running=now.running,
            best=best,
        )
