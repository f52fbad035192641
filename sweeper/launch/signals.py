"""How a run stops on Ctrl-C (SIGINT) or SIGTERM: without losing, or charging, a trial.

A worker told to stop puts the trials it was running back in the queue (`Store.release`: not an
attempt) and the run raises `Interrupted`, a KeyboardInterrupt that carries the signal, so that
the CLI exits with 128 + its number: 130 for SIGINT, 143 for SIGTERM.

Three shapes, one per kind of process:

- `raising`: the first signal raises `Interrupted` in the main thread (a worker, or a run with
  one worker in its own process); later ones are ignored while the trials are released.
- `noting`: the signal is only written down (`Stops`), for a supervisor that polls and then
  stops its workers in order.
- `blocked`: held back while worker processes are started, so that a new process (which
  inherits the mask) cannot die of a signal before it can put its trials back; the worker
  unblocks them once `raising` is in place.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType

#: the signals that stop a run politely (SIGKILL cannot be caught: leases cover it).
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; its workers' unfinished trials are back in the queue.

    Attributes:
        signum: the signal's number.
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """What a shell expects of a process this signal stopped: 128 + its number."""
        return 128 + self.signum


def exit_code(exc: BaseException) -> int:
    """The exit code for a run that `exc` (a KeyboardInterrupt) stopped: 130 unless told."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def _in_main_thread() -> bool:
    # Python runs signal handlers in the main thread only, and only it may install them.
    return threading.current_thread() is threading.main_thread()


def ignore() -> None:
    """Ignore SIGINT and SIGTERM from now on in this process."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def _raise(signum: int, frame: FrameType | None) -> None:
    ignore()
    raise Interrupted(signum)


def raise_on_stop() -> None:
    """From now on the first SIGINT or SIGTERM raises `Interrupted`; later ones are ignored.

    For a worker process, which keeps this until it exits. Main thread only.
    """
    for s in STOP_SIGNALS:
        signal.signal(s, _raise)


@contextlib.contextmanager
def raising() -> Iterator[None]:
    """Within: the first SIGINT or SIGTERM raises `Interrupted`; later ones are ignored.

    Ignoring the later ones lets the code that catches the first one release its trials without
    being cut short by an impatient second Ctrl-C. Outside the main thread this does nothing.
    """
    if not _in_main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    raise_on_stop()
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@dataclass
class Stops:
    """The stop signals received so far, newest last."""

    received: list[int] = field(default_factory=list)

    @property
    def signum(self) -> int | None:
        """The first signal received (None: none yet)."""
        return self.received[0] if self.received else None


@contextlib.contextmanager
def noting() -> Iterator[Stops]:
    """Within: SIGINT and SIGTERM are written down in the yielded `Stops`, nothing more.

    Outside the main thread no handler is installed and `Stops` stays empty.
    """
    stops = Stops()
    if not _in_main_thread():
        yield stops
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stops.received.append(signum)

    old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield stops
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Within: SIGINT and SIGTERM stay pending for this thread and for processes it starts.

    Where there are no signal masks (Windows) this does nothing.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unblock() -> None:
    """Deliver SIGINT and SIGTERM again (a worker started under `blocked`), pending ones now."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
