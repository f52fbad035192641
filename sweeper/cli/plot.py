"""`sweeper plot` (one figure to png, svg or pdf) and `sweeper report` (one HTML page).

Both need the ``plot`` extra; they check for it before reading the database, and import the
plotting libraries only when they run, so that `sweeper --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, get_args

import typer

from sweeper.cli.app import DbOpt, command
from sweeper.cli.choices import PlotKind
from sweeper.cli.output import open_store
from sweeper.errors import SweeperError

#: the kinds of `sweeper plot`, as `sweeper.plots.PLOTS` names them (a test keeps them equal;
#: listed here so that `--help` does not import the plotting code).
KINDS: tuple[str, ...] = get_args(PlotKind)
KIND_HELP = (
    "heatmap: the grid tables, lr x weight decay, one panel per group; "
    "curves: per-epoch seed means with 95% bands; "
    "domains: per-domain bars with intervals; "
    "history: a searched study's best so far; "
    "parallel: parallel coordinates over the parameters; "
    "importance: fANOVA parameter importances."
)


@command("plot")
def plot_cmd(
    name: Annotated[str, typer.Argument(help="Study name.")],
    kind: Annotated[
        PlotKind,
        typer.Option("--kind", "-k", help=KIND_HELP, show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="File to write: .png, .svg or .pdf.", show_default=False
        ),
    ],
    db: DbOpt = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", "-w", help="curves, parallel: keep configurations with KEY=VALUE."),
    ] = None,
    top: Annotated[
        float | None,
        typer.Option(
            help="parallel: keep the best fraction (e.g. 0.25); curves: draw the best fraction "
            "(default the best 8)."
        ),
    ] = None,
    other: Annotated[
        str | None,
        typer.Option(help="history: a second searched study in the same panel (random vs TPE)."),
    ] = None,
) -> None:
    """Draw one figure of a study to a png, svg or pdf file (the format from the extension).

    Example: sweeper plot obesity --kind heatmap -o obesity.png

    Example: sweeper plot obesity --kind curves --where optimizer=adam --where sam_rho=0 -o c.svg

    Example: sweeper plot obesity_tpe --kind history --other obesity_random -o history.pdf
    """
    from sweeper.plots.extra import require
    from sweeper.plots.save import format_of

    format_of(output)
    problems = []
    if where and kind not in ("curves", "parallel"):
        problems.append(f"--where is for --kind curves or parallel, not {kind}")
    if top is not None and kind not in ("curves", "parallel"):
        problems.append(f"--top is for --kind curves or parallel, not {kind}")
    if top is not None and not 0 < top <= 1:
        problems.append(f"--top must be a fraction in (0, 1], e.g. 0.25 (got {top:g})")
    if other is not None and kind != "history":
        problems.append(f"--other is for --kind history, not {kind}")
    if problems:
        raise SweeperError("\n".join(problems))
    filters = parse_where(where or [])
    # fANOVA is Optuna's, on scikit-learn's random forests.
    require("plotting", "matplotlib", *(["sklearn"] if kind == "importance" else []))

    from sweeper.plots import plot_study, save

    with open_store(db) as store:
        fig = plot_study(store, name, kind, where=filters, top=top, other=other)
    path = save(fig, output)
    sys.stderr.write(f"wrote {path} ({_size(path)}): {kind} of {name}\n")


@command("report")
def report_cmd(
    names: Annotated[list[str], typer.Argument(help="Study names, in the page's order.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="HTML file to write.", show_default=False),
    ],
    db: DbOpt = None,
) -> None:
    """Write one self-contained HTML page about the studies: description, status, provenance,
    every table, interactive figures, failed trials with their reasons, and the commands that
    reproduce them. It needs no network: open it from the file in any browser.

    Example: sweeper report obesity obesity_sam200 -o report.html
    """
    from sweeper.plots.extra import require

    if output.suffix.lower() not in (".html", ".htm"):
        raise SweeperError(
            f"cannot write {str(output)!r}: the report is HTML; give a file ending in .html"
        )
    require("the HTML report", "plotly")

    from sweeper.html_report import render_report

    with open_store(db) as store:
        page = render_report(store, list(dict.fromkeys(names)))
    output.write_text(page, encoding="utf-8")
    sys.stderr.write(
        f"wrote {output} ({_size(output)}): {', '.join(names)}; open it in any browser\n"
    )


def parse_where(clauses: list[str]) -> dict[str, Any]:
    """``["optimizer=adam", "lr=1e-3"]`` -> ``{"optimizer": "adam", "lr": 0.001}``: numbers and
    booleans as JSON reads them, anything else as text.

    Raises:
        SweeperError: a clause without ``=`` or without a key.
    """
    found: dict[str, Any] = {}
    for clause in clauses:
        key, sep, raw = clause.partition("=")
        if not sep or not key:
            raise SweeperError(f"--where {clause!r}: write KEY=VALUE, e.g. --where optimizer=adam")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        found[key] = value if isinstance(value, int | float | bool) else raw
    return found


def _size(path: Path) -> str:
    """A file's size for people: ``812 kB``, ``4.3 MB``."""
    size = path.stat().st_size
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB"
    return f"{max(1, round(size / 1000))} kB"
