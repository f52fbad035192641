"""The `sweeper` command line: the only package that reads argv, prints, and picks exit codes.

Each module is a group of commands over `sweeper.launch` (run, resume, worker), `sweeper.store`
and `sweeper.report` (studies, status, runs, best, importance, export, table), the figures and
the HTML report (plot: plot, report) and the datasets (data); `sweeper.cli.app` holds the app and
the error boundary every command runs behind.
"""

from __future__ import annotations

import os
import sys

from sweeper.cli import data, plot, query, run, show, table
from sweeper.cli import stats as stats  # registers compare, confirm and seeds
from sweeper.cli.app import DEFAULT_GROUP_SIZE, app
from sweeper.errors import StoreError

__all__ = [
    "DEFAULT_GROUP_SIZE",
    "StoreError",
    "app",
    "data",
    "main",
    "plot",
    "query",
    "run",
    "show",
    "table",
]


#: the global options (`sweeper.cli.app._global_options`) a user may write after the command.
_GLOBAL_FLAGS = ("-v", "-vv", "-vvv", "--verbose", "-q", "--quiet")
_GLOBAL_VALUED = ("--precision",)


def main() -> None:
    """Console entry point: ``--debug`` anywhere on the line shows tracebacks (see `app`), and
    the other global options may follow the command too."""
    argv = sys.argv[1:]
    if "--debug" in argv:
        os.environ["SWEEPER_DEBUG"] = "1"
        argv = [a for a in argv if a != "--debug"]
    # Typer handles usage errors itself (exit 2) and Ctrl-C outside a run (exit 1).
    app(args=hoist_global_options(argv), prog_name="sweeper")


def hoist_global_options(argv: list[str]) -> list[str]:
    """`argv` with the global options written after the command moved before it, where Typer
    parses them: ``sweeper runs obesity --precision 6`` is ``sweeper --precision 6 runs obesity``.
    Everything after ``--`` stays where it is."""
    head: list[str] = []
    rest: list[str] = []
    k = 0
    while k < len(argv):
        arg = argv[k]
        if arg == "--":
            rest.extend(argv[k:])
            break
        if arg in _GLOBAL_FLAGS or any(arg.startswith(f"{o}=") for o in _GLOBAL_VALUED):
            head.append(arg)
        elif arg in _GLOBAL_VALUED and k + 1 < len(argv):
            head.extend(argv[k : k + 2])
            k += 1
        else:
            rest.append(arg)
        k += 1
    return head + rest
