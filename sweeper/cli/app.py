"""The Typer app, its consoles, the options commands share, and the error boundary.

Every error a user can cause is a `SweeperError` raised below the CLI; `command` turns it into
one line ``Error: ...`` on stderr and exit 1 (usage errors exit 2, from Typer), with a traceback
only under ``--debug``. Tracebacks never show local variables: database URLs may carry
passwords. The boundary wraps each command, so Typer's `CliRunner` sees exactly what a shell
user sees.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from sweeper.cli.choices import Backend, CodeChanged, Format, Mode
from sweeper.cli.console import PipeAwareConsole, setup_logging
from sweeper.errors import SweeperError
from sweeper.launch.options import CODE_CHANGED, DEFAULT_GROUP_SIZE, DEFAULT_LEASE_S, MODES

app = typer.Typer(
    name="sweeper",
    help=(
        "Generalization sweeps (optimizer, lr, weight decay, SAM rho, seeds) with every trial "
        "kept in a results database.\n\n"
        "Start with `sweeper run studies/quick.toml`, then `sweeper table quick`. "
        "The global options (--precision, -v, -q, --debug) may also be given after the "
        "command; --debug shows a traceback on errors.\n\n"
        "Exit codes: 0 done, 1 error, 2 usage error, 3 a run whose trials failed, "
        "130/143 interrupted by SIGINT/SIGTERM."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

out = PipeAwareConsole(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        from sweeper import __version__

        out.print(f"sweeper {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    precision: Annotated[
        int | None,
        typer.Option(
            help="Significant digits of the numbers in tables (default: 4 in listings such as "
            "runs and best, 3 decimals in the averaged grids).",
            min=1,
            max=17,
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log lines (-vv: debug).")
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors: no warnings, no progress.")
    ] = False,
) -> None:
    """Options for every command."""
    if precision is not None or "sweeper.render.text" in sys.modules:
        # Imported only when needed (it imports pandas: 0.7 s before `sweeper run` can start
        # its workers); an earlier command in this process may have set it, so reset it then.
        from sweeper.render.text import set_precision

        set_precision(precision)
    setup_logging(-1 if quiet else verbose, err)


def debugging() -> bool:
    """Whether ``--debug`` (or SWEEPER_DEBUG=1) asked for tracebacks."""
    return os.environ.get("SWEEPER_DEBUG") == "1"


def command(*args: Any, on: typer.Typer | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register a command on `app` (or the sub-app `on`) behind the error boundary (see the
    module docstring); `args` and `kwargs` are Typer's."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def bounded(*a: Any, **k: Any) -> Any:
            try:
                return fn(*a, **k)
            except (typer.Exit, typer.Abort, KeyboardInterrupt):
                raise
            except typer.BadParameter:
                raise  # a bad argument found inside the command: Typer prints it, exit 2
            except SweeperError as exc:
                if debugging():
                    raise
                for line in str(exc).splitlines() or [type(exc).__name__]:
                    sys.stderr.write(f"Error: {line}\n")
                raise typer.Exit(1) from None
            except Exception as exc:
                if debugging():
                    raise
                sys.stderr.write(
                    f"Error: unexpected {type(exc).__name__}: {exc}\n(run again with --debug "
                    "for a traceback, and please report it)\n"
                )
                raise typer.Exit(1) from None

        (on or app).command(*args, **kwargs)(bounded)
        return fn

    return register


DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL or SQLite file (default: $SWEEPER_DB, else results.db here).",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    Format,
    typer.Option("--format", "-f", help="Output: a table (rich), markdown, csv, latex or json."),
]
NameArg = Annotated[str, typer.Argument(help="Study name.")]
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
BackendOpt = Annotated[Backend, typer.Option(help="Where workers run: local or dask.")]
SchedulerOpt = Annotated[
    str | None, typer.Option(help="Dask scheduler address, tcp://HOST:PORT (--backend dask).")
]
ModeOpt = Annotated[
    Mode,
    typer.Option(
        "--mode",
        "--executor",
        help="How workers train: "
        + "; ".join(f"{name}: {what}" for name, what in MODES.items())
        + " (--executor is the older name; it also takes 'trial').",
    ),
]
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
CodeChangedOpt = Annotated[
    CodeChanged,
    typer.Option(
        "--code-changed",
        help="When a user's task code changed since the study's trials ran: "
        + "; ".join(f"{name}: {what}" for name, what in CODE_CHANGED.items())
        + ".",
    ),
]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.")]
TableOpt = Annotated[bool, typer.Option(help="Print the study's table at the end.")]

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "DEFAULT_LEASE_S",
    "app",
    "command",
    "err",
    "out",
]
