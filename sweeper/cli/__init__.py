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


def main() -> None:
    """Console entry point: ``--debug`` anywhere on the line shows tracebacks (see `app`)."""
    argv = sys.argv[1:]
    if "--debug" in argv:
        os.environ["SWEEPER_DEBUG"] = "1"
        argv = [a for a in argv if a != "--debug"]
    # Typer handles usage errors itself (exit 2) and Ctrl-C outside a run (exit 1).
    app(args=argv, prog_name="sweeper")
