"""`sweeper table`: a study's averaged grids, or its per-domain tables."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from sweeper.cli.app import DbOpt, FormatOpt, command, out
from sweeper.cli.choices import Aggregate, Layout, Selection
from sweeper.cli.output import metric_frame, open_store
from sweeper.errors import SweeperError

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.store import Store, StudyInfo


@command("table")
def table_cmd(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    agg: Annotated[Aggregate, typer.Option(help="Aggregate over seeds.")] = "mean",
    fmt: FormatOpt = "rich",
    rows: Annotated[str | None, typer.Option(help="Row axis (default lr).")] = None,
    cols: Annotated[str | None, typer.Option(help="Column axis (default weight_decay).")] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(help="Axes that split tables (default: the other axes). Repeatable."),
    ] = None,
    bins: Annotated[
        int, typer.Option(help="Searched studies: bins per numeric parameter.", min=1)
    ] = 4,
    layout: Annotated[
        Layout,
        typer.Option(
            help="grid: the averaged grids; domains: rows the methods, columns the held-out "
            "domains and their average (domain-generalization studies)."
        ),
    ] = "grid",
    sem: Annotated[bool, typer.Option(help="Show mean ± sem (with --agg mean).")] = False,
    ci: Annotated[
        bool,
        typer.Option(
            help="Show mean [95% CI] (t below 10 seeds, bootstrap from 10) and mark with ~ the "
            "cells whose interval overlaps the best cell's (tied for best)."
        ),
    ] = False,
    select: Annotated[
        Selection | None,
        typer.Option(
            help="--layout domains: choose each method's other axes (e.g. lr) per held-out "
            "domain by source (source_f1, validation on the training domains) or oracle "
            "(the test score itself)."
        ),
    ] = None,
) -> None:
    """Print the averaged grids: one table per (optimizer, SAM rho), rows lr, columns weight
    decay, cells the mean over seeds, the best cell marked, incomplete cells showing n/expected.

    For a searched study each numeric parameter is binned (--bins); numeric parameters neither
    shown nor grouped on are pooled, categorical ones split tables.

    With --layout domains (a domain-generalization study such as ecg_small): rows the methods
    (--rows, default method), columns the held-out domains (--cols, default target) and their
    average, cells the mean over seeds (--sem adds ± sem), the best row of each column marked;
    --select source|oracle picks the other axes per (method, domain) instead of pooling them.

    --ci adds each cell's 95% interval (the domain Avg's by a bootstrap stratified by domain)
    and marks with ~ the cells tied for best.

    Example: sweeper table obesity --format markdown --ci

    Example: sweeper table ecg_lr --layout domains --select source --ci
    """
    if select is not None and layout != "domains":
        raise SweeperError("--select is for --layout domains (it picks per held-out domain)")
    if (sem or ci) and agg != "mean":
        raise SweeperError(
            f"--{'ci' if ci else 'sem'} is about the mean over seeds; drop --agg {agg} "
            "(or use --agg mean)"
        )
    with open_store(db) as store:
        if layout == "domains":
            print_domain_tables(
                store, name, fmt, rows, cols, group, agg=agg, sem=sem, ci=ci, select=select
            )
            return
        print_grid_tables(store, name, agg, fmt, rows, cols, group, bins, sem=sem, ci=ci)


def print_grid_tables(
    store: Store,
    name: str,
    agg: str,
    fmt: str,
    rows: str | None,
    cols: str | None,
    group: list[str] | None,
    bins: int = 4,
    *,
    sem: bool = False,
    ci: bool = False,
) -> None:
    from sweeper import render
    from sweeper.report import study_grid_tables

    render.check_format(fmt)
    info = store.study(name)
    study = info.study
    tables = study_grid_tables(
        metric_frame(store, info),
        study,
        agg=agg,
        rows=rows,
        cols=cols,
        groups=group,
        bins=bins,
        sem=sem,
        ci=ci,
    )
    title = render.grid_title(study, tables, agg)
    if fmt == "rich":
        for t in render.rich_tables(tables, title=title):
            out.print(t)
    else:
        sys.stdout.write(render.render_tables(tables, fmt, title=title))


def print_domain_tables(
    store: Store,
    name: str,
    fmt: str,
    rows: str | None,
    cols: str | None,
    group: list[str] | None,
    *,
    agg: str,
    sem: bool,
    ci: bool = False,
    select: str | None = None,
) -> None:
    """`sweeper table NAME --layout domains`: methods x held-out domains, plus Avg."""
    from sweeper import render
    from sweeper.report import study_domain_tables

    render.check_format(fmt)
    if agg != "mean":
        raise SweeperError(
            "--layout domains shows the mean over seeds (add --sem for ± sem); "
            "--agg is for --layout grid"
        )
    info = store.study(name)
    study = info.study
    # Selection by source_f1 needs the other metrics; the plain table only its own.
    frame = metric_frame(store, info) if select is None else _all_metrics(store, info)
    tables = study_domain_tables(
        frame, study, rows=rows, cols=cols, groups=group, ci=ci, select=select
    )
    col_axis = tables[0].col_axis if tables else (cols or "target")
    title = render.domain_title(study, tables, col_axis, sem)
    if fmt == "rich":
        for t in render.rich_domain_tables(tables, title=title, sem=sem):
            out.print(t)
    else:
        sys.stdout.write(render.render_domain_tables(tables, fmt, title=title, sem=sem))


def _all_metrics(store: Store, info: StudyInfo) -> pd.DataFrame:
    frame = store.frame(info.id, bookkeeping=False)
    frame[info.study.metric] = frame["value"]
    return frame
