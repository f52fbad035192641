"""Local worker processes under a supervisor that outlives any one of them.

`supervise` starts one process per worker (multiprocessing's ``spawn``: a fresh interpreter,
whatever threads this process runs) and watches them:

- A worker that dies (kill -9, the out-of-memory killer, a segfault) does not end the run. Its
  running trials go back to the queue at once, as a lost attempt; a trial whose attempts are
  past ``--max-retries`` fails instead, saying why, so that a trial that kills its worker every
  time cannot kill workers forever. A replacement starts (at most `REPLACEMENTS_PER_WORKER`
  per worker in one run) and `on_event` gets one line saying what happened.
- On SIGINT or SIGTERM every worker is told to stop (SIGTERM), puts its trials back without
  charging an attempt (`sweeper.launch.worker.release_running`), and `supervise` raises
  `Interrupted`. A worker that has not stopped after `STOP_GRACE_S` is killed and its trials
  are put back for it.
- A worker's error (a task that cannot start, a database that cannot be reached) stops the
  others the same way, then is raised here as the worker raised it.

Workers exit on their own when this process is gone (`WorkerOptions.parent_pid`), and talk to it
only through one pipe each: no semaphore, so nothing for a resource tracker to warn about.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from sweeper.errors import SweeperError
from sweeper.launch import signals
from sweeper.launch.options import Job
from sweeper.launch.worker import WorkerReport, held, release_running, run_jobs
from sweeper.store import Store, StudyInfo, WorkerId
from sweeper.tasks.base import TrialOutcome

#: a run replaces at most this many dead workers per worker it started.
REPLACEMENTS_PER_WORKER = 2
#: seconds a worker told to stop has to put its trials back before it is killed.
STOP_GRACE_S = 10.0
#: how often the supervisor looks at its workers and at the signals it received.
POLL_S = 0.2

#: called with one line of text when something happens to a worker.
OnEvent = Callable[[str], None]


@dataclass
class _Slot:
    """A worker process: its number for people (a replacement keeps it), its pipe, its id."""

    number: int
    process: BaseProcess
    inbox: Connection
    worker: WorkerId


def supervise(db_url: str, jobs: Sequence[Job], n: int, on_event: OnEvent) -> list[WorkerReport]:
    """Run `n` worker processes on the `jobs`' studies until they are done; their reports
    (one per worker and study).

    Raises:
        Interrupted: SIGINT or SIGTERM; every trial the workers held is back in the queue.
        SweeperError: workers kept dying and none is left to finish the study.
        Exception: what a worker raised (the others were stopped first).
    """
    if not jobs:
        return []
    return _Supervisor(db_url, list(jobs), n, on_event).run()


def _child(outbox: Connection, db_url: str, jobs: Sequence[Job], nonce: str) -> None:
    """A worker process: run `run_worker` on each job in turn, then send ``(kind, value)`` to
    the supervisor: ``("report", [WorkerReport, ...])``, ``("interrupted", signum)`` or
    ``("error", exception)``.

    It starts with SIGINT and SIGTERM blocked (`_Supervisor._start`) and unblocks them only
    once they raise `Interrupted`; the first one also makes later ones ignored, so that the
    message is always sent.
    """
    host, pid = socket.gethostname(), os.getpid()
    me = WorkerId(f"{host}:{pid}:{nonce}", host, pid)
    signals.raise_on_stop()
    message: tuple[str, Any]
    try:
        try:
            signals.unblock()
            reports = run_jobs(db_url, jobs, me=me)
            signals.ignore()
            message = ("report", reports)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - the supervisor raises it
            message = ("error", _portable(exc, pid))
            signals.ignore()
    except KeyboardInterrupt as stop:
        signals.ignore()
        message = ("interrupted", getattr(stop, "signum", signal.SIGINT))
    outbox.send(message)
    outbox.close()
    # Everything is recorded and closed (run_worker's store, the message sent): skip the
    # interpreter's teardown, which with torch loaded takes about half a second of the run's
    # end (measured), as a forked multiprocessing child would.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(0)


def _portable(exc: BaseException, pid: int) -> BaseException:
    """`exc` as it can cross to the supervisor, with this worker's traceback as a note."""
    exc.add_note(f"in worker process {pid}:\n" + "".join(traceback.format_exception(exc)))
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - an exception pickle cannot rebuild
        kind = SweeperError if isinstance(exc, SweeperError) else RuntimeError
        return kind(f"{type(exc).__name__}: {exc}" if kind is RuntimeError else str(exc))


def _receive(inbox: Connection) -> tuple[str, Any] | None:
    """The message of a worker that ended, or None if it died without one."""
    try:
        if not inbox.poll():
            return None
        message: tuple[str, Any] = inbox.recv()
    except (EOFError, OSError):
        return None
    finally:
        inbox.close()
    return message


def _how(exitcode: int | None) -> str:
    """How a process ended, in words: ``SIGKILL``, ``exit code 1``."""
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Supervisor:
    def __init__(self, db_url: str, jobs: list[Job], n: int, on_event: OnEvent) -> None:
        self.db_url, self.jobs, self.n = db_url, jobs, n
        # One run, one retry policy (every job's options come from the same run options).
        self.max_retries = jobs[0][1].max_retries
        self.on_event = on_event
        self.mp = multiprocessing.get_context("spawn")
        self.slots: list[_Slot] = []  # the live ones
        self.workers: list[WorkerId] = []  # every worker started, for the final clean-up
        self.reports: list[WorkerReport] = []
        self.replaced = 0
        self.unreplaced = 0  # deaths without a replacement
        self.store: Store | None = None
        self.infos: list[StudyInfo] | None = None

    def run(self) -> list[WorkerReport]:
        try:
            with signals.noting() as stops:
                for number in range(1, self.n + 1):
                    self._start(number)
                while self.slots:
                    if stops.signum is not None:
                        self._stop(stops)
                        raise signals.Interrupted(stops.signum)
                    wait([s.process.sentinel for s in self.slots], timeout=POLL_S)
                    for slot in [s for s in self.slots if not s.process.is_alive()]:
                        self._ended(slot, stops)
                if stops.signum is not None:
                    # The last workers ended as the signal came: their trials are back too.
                    self._stop(stops)
                    raise signals.Interrupted(stops.signum)
            if self.unreplaced:
                self._check_finished()
            return self.reports
        finally:
            # Only after an error of this process: every other way out left no worker.
            self._halt(None)
            if self.store is not None:
                self.store.close()

    # -- starting and ending workers ----------------------------------------------------------

    def _start(self, number: int) -> _Slot:
        inbox, outbox = self.mp.Pipe(duplex=False)
        nonce = os.urandom(4).hex()
        process = self.mp.Process(
            target=_child,
            args=(outbox, self.db_url, self.jobs, nonce),
            name=f"sweeper-worker-{number}",
        )
        # Blocked while it starts, so that a Ctrl-C cannot kill it before it can put its
        # trials back: the new interpreter inherits the mask, and `_child` unblocks.
        with signals.blocked():
            process.start()
        outbox.close()
        pid = process.pid
        if pid is None:  # start() sets it; for the type checker
            raise RuntimeError("a worker process did not start")
        host = socket.gethostname()
        slot = _Slot(number, process, inbox, WorkerId(f"{host}:{pid}:{nonce}", host, pid))
        self.slots.append(slot)
        self.workers.append(slot.worker)
        return slot

    def _ended(self, slot: _Slot, stops: signals.Stops) -> None:
        self.slots.remove(slot)
        slot.process.join()
        message: tuple[str, Any] = _receive(slot.inbox) or ("died", None)
        kind, value = message
        if kind == "report":
            self.reports.extend(value)
        elif kind == "error" and stops.signum is None:
            self._stop(stops)
            raise value
        elif kind == "interrupted":
            # A signal to this worker alone (to all of them, the main loop stops the run):
            # it put its trials back and is not replaced.
            if stops.signum is None:
                self.on_event(
                    f"worker {slot.number} (pid {slot.worker.pid}) was stopped by "
                    f"{signal.Signals(value).name}; its trials went back to the queue"
                )
        elif stops.signum is None:
            self._died(slot)

    def _died(self, slot: _Slot) -> None:
        how = _how(slot.process.exitcode)
        requeued, failed = self._recover(slot.worker, how)
        what = [
            f"worker {slot.number} (pid {slot.worker.pid}) died ({how})",
            self._trials_text(requeued, failed),
        ]
        if self.replaced < REPLACEMENTS_PER_WORKER * self.n and self._work_left():
            self.replaced += 1
            new = self._start(slot.number)
            what.append(f"started a replacement (pid {new.worker.pid})")
        elif self.replaced >= REPLACEMENTS_PER_WORKER * self.n:
            self.unreplaced += 1
            what.append(f"not replaced: this run already replaced {self.replaced} workers")
        self.on_event("; ".join(what))

    def _trials_text(self, requeued: int, failed: int) -> str:
        if not requeued and not failed:
            return "it held no trial"
        parts = []
        if requeued:
            parts.append(f"{_plural(requeued, 'trial')} went back to the queue")
        if failed:
            parts.append(
                f"{_plural(failed, 'trial')} failed (no attempts left, "
                f"--max-retries {self.max_retries})"
            )
        return "its " + " and ".join(parts)

    # -- the database -------------------------------------------------------------------------

    def _open(self) -> tuple[Store, list[StudyInfo]]:
        if self.store is None:
            self.store = Store(self.db_url)
        if self.infos is None:
            self.infos = [self.store.study(name) for name, _ in self.jobs]
        return self.store, self.infos

    def _recover(self, worker: WorkerId, how: str) -> tuple[int, int]:
        """Re-queue the trials a dead worker was running, or fail those out of attempts.

        Returns:
            (re-queued, failed), over every study of the run.
        """
        store, infos = self._open()
        requeued = failed = 0
        for info in infos:
            trials = held(store, info.id, [worker])[worker.token]
            over = [t for t, attempts in trials if attempts > self.max_retries]
            if over:
                reason = (
                    f"worker process {worker.pid} on {worker.host} died ({how}) while running "
                    f"this trial, and no attempts are left (--max-retries {self.max_retries})"
                )
                if how == "SIGKILL":
                    reason += "; SIGKILL is what the out-of-memory killer sends"
                outcomes = [TrialOutcome(t, error=reason) for t in over]
                failed += store.record(
                    worker, outcomes, info.study.metric, code_hash=info.code_hash
                )
            # Only this worker's trials: the pid of every other process counts as alive.
            requeued += store.requeue_lost(info.id, worker.host, lambda pid: pid != worker.pid)
        return requeued, failed

    def _work_left(self) -> bool:
        store, infos = self._open()
        for info in infos:
            counts = store.counts(info.id)
            if info.study.searched or counts["queued"] + counts["running"] > 0:
                return True
        return False

    def _check_finished(self) -> None:
        """Raise if dead workers left trials that no worker of this run will finish."""
        store, infos = self._open()
        lefts = {}
        for info in infos:
            counts = store.counts(info.id)
            lefts[info.study.name] = counts["queued"] + counts["running"]
        left = sum(lefts.values())
        if left:
            names = ", ".join(repr(name) for name, n in lefts.items() if n)
            raise SweeperError(
                f"worker processes kept dying ({self.replaced + self.unreplaced} in this run, "
                f"{self.replaced} replaced), leaving {_plural(left, 'trial')} of "
                f"{names} in the queue: run the same command again to finish them "
                "(SIGKILL usually means out of memory: try fewer --workers or a smaller "
                "--max-memory)"
            )

    # -- stopping -----------------------------------------------------------------------------

    def _stop(self, stops: signals.Stops) -> None:
        """Stop every worker (`_halt`), then put back whatever trials they still hold."""
        self._halt(stops)
        store, infos = self._open()
        for info in infos:
            release_running(store, info.id, self.workers)

    def _halt(self, stops: signals.Stops | None) -> None:
        """Tell every worker to stop, give them `STOP_GRACE_S`, then kill those still there.

        A second signal ends the wait at once.
        """
        for slot in self.slots:
            _signal(slot.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        received = len(stops.received) if stops is not None else 0
        while self.slots and time.monotonic() < deadline:
            if stops is not None and len(stops.received) > received:
                break
            wait([s.process.sentinel for s in self.slots], timeout=0.1)
            for slot in [s for s in self.slots if not s.process.is_alive()]:
                self.slots.remove(slot)
                slot.process.join()
                _receive(slot.inbox)
        for slot in self.slots:
            _signal(slot.process, signal.SIGKILL)
        for slot in self.slots:
            slot.process.join()
            slot.inbox.close()
        self.slots.clear()


def _signal(process: BaseProcess, signum: int) -> None:
    if process.pid is not None and process.exitcode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)
