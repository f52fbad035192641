"""A Rich progress bar fed by the database, so it shows every worker's results, wherever run."""

from __future__ import annotations

import threading
from types import TracebackType

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

from sweeper.store import Store


class StudyProgress:
    """Poll the study's counts twice a second and draw done/total, failures, ETA, best so far.

    Use as a context manager around the executor; `done_before` trials count as already done
    (resumed runs), so the ETA reflects this run's speed only.
    """

    def __init__(
        self,
        store: Store,
        study_id: int,
        *,
        metric: str,
        direction: str,
        console: Console,
        enabled: bool = True,
        interval: float = 0.5,
        planned: int | None = None,
    ) -> None:
        """`planned`: the trials the study will hold when done, when more than are stored yet
        (a searched study enqueues its configurations as it goes)."""
        self.store, self.study_id = store, study_id
        self.planned = planned
        self.metric, self.direction = metric, direction
        self.interval = interval
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
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
            disable=not enabled,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> StudyProgress:
        counts = self.store.counts(self.study_id)
        done = counts["completed"] + counts["failed"] + counts["pruned"]
        self._task = self.progress.add_task(
            "trials",
            total=self._total(counts),
            completed=done,
            failed=counts["failed"],
            running=counts["running"],
            best=self._best(),
        )
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
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self._update()
        finally:
            self.progress.stop()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._update()
            except Exception:  # noqa: BLE001 - a busy database only delays the next redraw
                continue

    def _update(self) -> None:
        if self._task is None:
            return
        counts = self.store.counts(self.study_id)
        self.progress.update(
            self._task,
            total=self._total(counts),
            completed=counts["completed"] + counts["failed"] + counts["pruned"],
            failed=counts["failed"],
            running=counts["running"],
            best=self._best(),
        )

    def _total(self, counts: dict[str, int]) -> int:
        return max(sum(counts.values()), self.planned or 0)

    def _best(self) -> str:
        value = self.store.best_value(self.study_id, self.direction)
        return f"{self.metric} {value:.4g}" if value is not None else "-"
