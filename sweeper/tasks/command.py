"""A task that runs a user's program: ``command = ["python", "train.py", "--lr", "{lr}"]``.

Per trial, the `{name}` placeholders of the command are replaced by the trial's parameters (and
``{seed}``, ``{trial_id}``; ``{{`` and ``}}`` are literal braces), and the program runs in its
own process group with these variables set:

    SWEEPER_TRIAL_ID, SWEEPER_SEED, SWEEPER_PARAMS (JSON), SWEEPER_TRIAL_DIR (created),
    SWEEPER_DATA_DIR, SWEEPER_DEVICE, and PYTHONUNBUFFERED=1 unless already set.

The program talks back on stdout, one JSON object per line:

    {"step": 3, "train_loss": 0.41, "val_loss": 0.52}   a point of each curve (may be pruned)
    {"val_loss": 0.50, "val_acc": 0.83}                 the final metrics (the last one wins)

Every other line (and all of stderr) is the trial's log, of which a bounded tail is kept in the
outcome. Programs other than Python must flush stdout after each line, or reports arrive late.
No child outlives `run`: its whole process group is killed when a trial ends, however it ends,
and on Linux the child is killed by the kernel if the worker dies (even by ``kill -9``).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

from sweeper.tasks.base import RunContext, TrialInput, TrialOutcome
from sweeper.tasks.command_template import (
    CommandTemplateError,
    placeholders,
    render,
)
from sweeper.trial import Trial, TrialPruned, check_metrics

#: a stdout line longer than this (characters) is cut into the log, never parsed.
MAX_LINE = 1 << 20
#: the log tail kept per trial: at most this many lines, and this many characters in all.
LOG_LINES = 50
LOG_CHARS = 8192
#: how often the reading loop wakes up to check the deadline and whether the program exited.
POLL_S = 0.2
#: after the program exited, how long to wait for the end of its output (a descendant that
#: escaped its process group may hold the pipe open forever).
DRAIN_S = 1.0


class CommandTask:
    """Runs a command once per trial (see the module docstring).

    Attributes:
        name: the command as one shell-quoted line (for messages).
        metrics: empty: the study's metric is checked when a trial ends.
        params_model: None (the command's parameters are whatever the study declares).
        validation_curve: the curve a pruner judges, or None.
    """

    supports_batching: ClassVar[bool] = False

    def __init__(
        self,
        argv_template: list[str],
        cwd: Path,
        metric: str,
        timeout: float | None,
        prune_curve: str | None,
        grace_s: float = 5.0,
        *,
        trials_dir: Path,
    ) -> None:
        """Args:
        argv_template: the program and its arguments, with placeholders.
        cwd: where the program runs (the study file's directory).
        metric: the study's metric, which the final metrics must contain.
        timeout: seconds a trial may run (None: no limit).
        prune_curve: the reported curve the study's pruner judges (None: no pruning).
        grace_s: after SIGTERM (pruned, timed out), seconds before SIGKILL.
        trials_dir: each trial's directory is ``trials_dir / <trial key>``.

        Raises:
            CommandTemplateError: a malformed placeholder (unknown names are the validator's
                job: `template_problems`).
        """
        placeholders(argv_template)
        if not argv_template:
            raise CommandTemplateError("command: must name a program (an empty list)")
        self.argv_template = list(argv_template)
        self.cwd = cwd
        self.metric = metric
        self.timeout = timeout
        self.validation_curve = prune_curve
        self.grace_s = grace_s
        self.trials_dir = trials_dir
        self.name = shlex.join(argv_template)
        self.metrics: tuple[str, ...] = ()
        self.params_model = None

    def pruning_problem(self, fixed: Mapping[str, Any]) -> str | None:
        if self.validation_curve is None:
            return "no curve to prune on: name the curve the command reports (prune_curve)"
        return None

    def group_key(self, params: Mapping[str, Any]) -> str:
        return ""

    def member_bytes(self, params: Mapping[str, Any]) -> int:
        return 0

    def check_data(self, params: Mapping[str, Any], data_dir: Path) -> None:
        return None

    def run(self, trials: Sequence[TrialInput], ctx: RunContext) -> Iterator[TrialOutcome]:
        """Run the command once per trial; yield each outcome when its process group is gone.

        Failed outcomes carry a one-line reason: ``command exited with code 3: <last stderr
        line>``, ``timed out after 5 s``, ``command printed no final metrics ...``,
        ``metric 'val_loss' is nan``, ``program not found: ...``. Every outcome carries the log
        tail and the curves reported so far.
        """
        for item in trials:
            yield self._run_one(item, ctx)

    def _run_one(self, item: TrialInput, ctx: RunContext) -> TrialOutcome:
        trial = Trial(
            item.trial_id,
            item.seed,
            item.params,
            data_dir=ctx.data_dir,
            dir=self.trials_dir / item.key,
            device=ctx.device,
            heartbeat=ctx.heartbeat,
            should_prune=ctx.should_prune,
            prune_curve=self.validation_curve,
        )
        values = {**item.params, "seed": item.seed, "trial_id": item.trial_id}
        try:
            argv = render(self.argv_template, values)
        except CommandTemplateError as exc:
            return TrialOutcome(item.trial_id, error=str(exc))
        env = {
            **os.environ,
            "SWEEPER_TRIAL_ID": str(item.trial_id),
            "SWEEPER_SEED": str(item.seed),
            "SWEEPER_PARAMS": json.dumps(dict(item.params), sort_keys=True),
            "SWEEPER_TRIAL_DIR": str(trial.dir),
            "SWEEPER_DATA_DIR": str(ctx.data_dir),
            "SWEEPER_DEVICE": ctx.device,
        }
        # Python block-buffers a piped stdout: reports would arrive only at exit.
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                start_new_session=True,
                preexec_fn=_die_with_worker(),
            )
        except FileNotFoundError:
            return TrialOutcome(
                item.trial_id, error=f"program not found: {argv[0]!r} (cwd {self.cwd})"
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return TrialOutcome(item.trial_id, error=f"cannot run {argv[0]!r}: {reason}")
        run = _Process(proc, self.grace_s)
        try:
            error, pruned = self._follow(run, trial)
        finally:
            run.close()
        metrics = trial.last_values() if pruned else {}
        if error is None and not pruned:
            error, metrics = self._finish(run)
        return TrialOutcome(
            item.trial_id,
            metrics=metrics,
            curves=trial.curves,
            error=error,
            pruned=pruned,
            log=run.log.text(),
        )

    def _follow(self, run: _Process, trial: Trial) -> tuple[str | None, bool]:
        """Read the program's reports until it exits: (reason it failed or None, pruned)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        exited_at: float | None = None
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                run.terminate()
                return f"timed out after {self.timeout:g} s", False
            wait = POLL_S if deadline is None else min(POLL_S, deadline - now)
            try:
                line = run.lines.get(timeout=wait)
            except queue.Empty:
                if run.proc.poll() is not None:
                    exited_at = exited_at if exited_at is not None else now
                    if now - exited_at > DRAIN_S:
                        break
                continue
            if line is None:
                break  # end of stdout
            try:
                run.take(line, trial)
            except TrialPruned:
                run.terminate()
                return None, True
            except (TypeError, ValueError) as exc:
                run.terminate()
                return f"bad report on stdout: {exc}", False
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            run.proc.wait(remaining)
        except subprocess.TimeoutExpired:
            run.terminate()
            return f"timed out after {self.timeout:g} s", False
        return None, False

    def _finish(self, run: _Process) -> tuple[str | None, dict[str, float]]:
        code = run.proc.returncode
        if code != 0:
            last = run.last_stderr()
            if code < 0:
                what = f"command was killed by signal {_signal_name(-code)}"
            else:
                what = f"command exited with code {code}"
            return (f"{what}: {last}" if last else what), {}
        if run.final is None:
            return 'command printed no final metrics (a JSON object without "step" on stdout)', {}
        try:
            return None, check_metrics(run.final, self.metric)
        except ValueError as exc:
            return str(exc), {}


class _Process:
    """A running command: its reader threads, its reports, its log tail, and its end."""

    def __init__(self, proc: subprocess.Popen[str], grace_s: float) -> None:
        self.proc = proc
        self.grace_s = grace_s
        self.log = _LogTail()
        self.stderr: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self.lines: queue.Queue[tuple[str, bool] | None] = queue.Queue()
        self.final: dict[str, Any] | None = None
        assert proc.stdout is not None and proc.stderr is not None  # both are PIPE
        self.readers = [
            threading.Thread(
                target=_read_lines,
                args=(proc.stdout, self._stdout_line, lambda: self.lines.put(None)),
                name=f"sweeper-stdout-{proc.pid}",
                daemon=True,
            ),
            threading.Thread(
                target=_read_lines,
                args=(proc.stderr, self._stderr_line, lambda: None),
                name=f"sweeper-stderr-{proc.pid}",
                daemon=True,
            ),
        ]
        for reader in self.readers:
            reader.start()

    def _stdout_line(self, text: str, cut: bool) -> None:
        self.lines.put((text, cut))

    def _stderr_line(self, text: str, cut: bool) -> None:
        self.stderr.append(text)
        self.log.add(text, cut)

    def take(self, line: tuple[str, bool], trial: Trial) -> None:
        """Act on one stdout line: a step report, final metrics, or a log line.

        Raises:
            TrialPruned: the pruner stops the trial at this report.
            TypeError, ValueError: a malformed step report.
        """
        text, cut = line
        report = None if cut else _json_object(text)
        if report is None:
            self.log.add(text, cut)
        elif "step" in report:
            step = report.pop("step")
            if isinstance(step, bool) or not isinstance(step, int):
                raise TypeError(f'"step" must be an integer (got {json.dumps(step):.60})')
            trial.report(step, **report)
        else:
            self.final = report

    def last_stderr(self) -> str:
        """The last non-blank stderr line (cut to 200 characters), or ""."""
        for reader in self.readers[1:]:
            reader.join(DRAIN_S)  # its last lines, unless a descendant holds stderr open
        for text in reversed(self.stderr):
            if text.strip():
                return text.strip()[:200]
        return ""

    def terminate(self) -> None:
        """SIGTERM to the process group; SIGKILL once `grace_s` has passed."""
        _signal_group(self.proc, signal.SIGTERM)
        try:
            self.proc.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc, signal.SIGKILL)

    def close(self) -> None:
        """Kill what is left of the process group, reap the program, end the readers."""
        _signal_group(self.proc, signal.SIGKILL)
        self.proc.wait()
        for reader in self.readers:
            reader.join(DRAIN_S)
        # A reader still blocked (a descendant that left the group holds the pipe) keeps its
        # stream: closing it would wait on the lock that reader holds.
        for reader, stream in zip(self.readers, (self.proc.stdout, self.proc.stderr), strict=True):
            if not reader.is_alive() and stream is not None:
                stream.close()


class _LogTail:
    """The last `LOG_LINES` lines, at most `LOG_CHARS` characters (thread-safe)."""

    def __init__(self) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self._lock = threading.Lock()

    def add(self, text: str, cut: bool) -> None:
        if cut or len(text) > LOG_CHARS:
            text = text[:LOG_CHARS] + f" ... (line cut at {LOG_CHARS} characters)"
        with self._lock:
            self._lines.append(text)

    def text(self) -> str | None:
        with self._lock:
            lines = list(self._lines)
        kept: list[str] = []
        size = 0
        for line in reversed(lines):
            size += len(line) + 1
            if size > LOG_CHARS and kept:
                break
            kept.append(line)
        text = "\n".join(reversed(kept))
        return text[-LOG_CHARS:] if text else None


def _read_lines(
    stream: IO[str], emit: Callable[[str, bool], None], done: Callable[[], None]
) -> None:
    """Call ``emit(line, cut)`` per line of `stream` (lines over `MAX_LINE` are cut, the rest of
    them skipped, so memory stays bounded), then ``done()``."""
    try:
        while True:
            line = stream.readline(MAX_LINE + 1)
            if not line:
                break
            if line.endswith("\n") or len(line) <= MAX_LINE:
                emit(line.rstrip("\r\n"), False)
                continue
            emit(line[:MAX_LINE], True)
            rest = line
            while rest and not rest.endswith("\n"):
                rest = stream.readline(MAX_LINE)
    except (OSError, ValueError):
        pass  # the stream was closed under us: the trial is over
    finally:
        done()


def _json_object(text: str) -> dict[str, Any] | None:
    """`text` as a JSON object (NaN and Infinity allowed, as Python's json writes them)."""
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _signal_group(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    # start_new_session made the program the leader of its own group, so its pid is the group's
    # id; ProcessLookupError means every member is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _die_with_worker() -> Callable[[], None] | None:
    """A `preexec_fn` making the kernel SIGKILL the child when the worker dies (Linux only).

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process. That
    is safe here: the forking thread stays inside `CommandTask.run` until the child is gone.
    `preexec_fn` is documented as unsafe when the parent has threads (a lock held at fork time
    may deadlock the child before exec); the function is therefore resolved here, in the
    parent, so the child only makes the system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    pr_set_pdeathsig = 1
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the worker died before the death signal was armed
            os._exit(1)

    return preexec
