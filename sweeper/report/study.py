"""A stored study's tables with the layout the CLI, the plots and the HTML report all use:
which axes make rows, columns and tables, and how a searched study's parameters are binned."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pandas as pd

from sweeper import compare
from sweeper.compare import SELECTIONS
from sweeper.errors import SweeperError
from sweeper.registry import check_name
from sweeper.report.best import best_configs, observed_axes
from sweeper.report.bins import binned_axes
from sweeper.report.domains import DomainTable, domain_tables
from sweeper.report.grid import GridTable, grid_tables
from sweeper.report.intervals import best_with_intervals
from sweeper.study import Study

#: the score on the training domains' held-out records that ``--select source`` chooses by.
SOURCE_METRIC = "source_f1"


def study_grid_tables(
    frame: pd.DataFrame,
    study: Study,
    *,
    agg: str = "mean",
    rows: str | None = None,
    cols: str | None = None,
    groups: list[str] | None = None,
    bins: int = 4,
    sem: bool = False,
    ci: bool = False,
) -> list[GridTable]:
    """The study's grid tables: rows lr, columns weight decay, one table per other axis value
    (defaults); a searched study's numeric parameters binned (`bins`), its categorical ones
    splitting tables.

    Args:
        frame: the study's trials with a column named after its metric.
        sem, ci: as for `grid_tables`.

    Raises:
        SweeperError: the study has no axes to tabulate.
        UnknownNameError: an unknown axis, aggregate or metric.
    """
    all_axes: dict[str, list[Any]] = dict(study.axes)
    seeds = list(study.seeds)
    if study.searched:
        frame, binned = binned_axes(frame, study.search, bins)
        all_axes = dict(binned)
        seeds = []  # a bin holds as many trials as the sampler put there: nothing is missing
    axes = list(all_axes)
    if not axes:
        raise SweeperError(
            f"study {study.name!r} has no sweep axes to tabulate; use `sweeper runs`"
        )
    row_axis = rows or ("lr" if "lr" in axes else axes[0])
    rest = [a for a in axes if a != row_axis]
    col_axis = cols or ("weight_decay" if "weight_decay" in rest else (rest[0] if rest else None))
    if study.searched and groups is None:
        shown = {row_axis, col_axis}
        groups = [a for a in axes if a not in shown and study.search[a]["type"] == "categorical"]
    return grid_tables(
        frame,
        axes=all_axes,
        seeds=seeds,
        metric=study.metric,
        direction=study.direction,
        rows=row_axis,
        cols=col_axis,
        groups=groups,
        agg=agg,
        sem=sem,
        ci=ci,
    )


def study_domain_tables(
    frame: pd.DataFrame,
    study: Study,
    *,
    rows: str | None = None,
    cols: str | None = None,
    groups: list[str] | None = None,
    ci: bool = False,
    select: str | None = None,
    source_metric: str = SOURCE_METRIC,
) -> list[DomainTable]:
    """The study's per-domain tables: rows the methods (default axis ``method``), columns the
    held-out domains (default ``target``) and their average.

    Args:
        frame: the study's trials with its metric column (and `source_metric` for
            ``select="source"``).
        ci: add the intervals (`domain_tables`).
        select: None pools every other axis into the cells (or groups on it); ``oracle`` or
            ``source`` instead picks, per (row, domain) and within each group, the
            configuration of the other axes with the best seed mean of the test metric
            (oracle) or of `source_metric` (source), as `sweeper.compare.select` does.

    Raises:
        SweeperError: the study lacks the row or column axis, or its trials lack
            `source_metric` for ``select="source"``.
        UnknownNameError: an unknown selection.
    """
    axes = list(study.axes)
    row_axis = rows or "method"
    col_axis = cols or "target"
    for option, axis in (("--rows", row_axis), ("--cols", col_axis)):
        if axis not in axes:
            raise SweeperError(
                f"--layout domains: study {study.name!r} has no axis {axis!r} for {option}; "
                f"its axes: {', '.join(axes) or '(none)'}"
            )
    if select is None:
        return domain_tables(
            frame,
            axes=study.axes,
            seeds=list(study.seeds),
            metric=study.metric,
            direction=study.direction,
            rows=row_axis,
            cols=col_axis,
            groups=groups,
            ci=ci,
        )
    check_name("selection", select, SELECTIONS)
    if select == "source" and source_metric not in frame.columns:
        raise SweeperError(
            f"--select source chooses by {source_metric}, which the trials of study "
            f"{study.name!r} do not record; use --select oracle"
        )
    group_axes = list(groups or [])
    shown = [row_axis, col_axis, *group_axes]
    hparams = [a for a in axes if a not in shown]
    parts = [
        compare.select(
            part,
            method_axis=row_axis,
            target_axis=col_axis,
            hparams=hparams,
            metric=study.metric,
            direction=study.direction,
            by=select,
            source_metric=source_metric,
        )
        for part in _split(frame, group_axes)
    ]
    chosen = pd.concat(parts) if parts else frame.iloc[:0]
    tables = domain_tables(
        chosen,
        axes={a: study.axes[a] for a in axes if a in shown},
        seeds=list(study.seeds),
        metric=study.metric,
        direction=study.direction,
        rows=row_axis,
        cols=col_axis,
        groups=group_axes,
        ci=ci,
    )
    return [replace(t, selection=select, chosen=_chosen(chosen, t, hparams)) for t in tables]


def _split(frame: pd.DataFrame, axes: list[str]) -> list[pd.DataFrame]:
    """The frame's rows per combination of `axes` values (the whole frame without axes)."""
    if not axes or not len(frame):
        return [frame]
    return [part for _, part in frame.groupby(axes, sort=False, dropna=False)]


def _chosen(
    frame: pd.DataFrame, table: DomainTable, hparams: list[str]
) -> list[list[dict[str, Any]]]:
    """Per (row, domain) of `table` the hyperparameters `compare.select` kept (empty: none)."""
    part = frame
    for axis, value in table.group.items():
        part = part[[_same(v, value) for v in part[axis]]]
    out: list[list[dict[str, Any]]] = []
    for row in table.rows:
        cells: list[dict[str, Any]] = []
        for domain in table.domains:
            hit = part[
                [_same(r, row) and _same(d, domain)
                 for r, d in zip(part[table.row_axis], part[table.col_axis], strict=True)]
            ]  # fmt: skip
            cells.append({h: hit[h].iloc[0] for h in hparams} if len(hit) else {})
        out.append(cells)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return bool(a == b)


def study_best(
    frame: pd.DataFrame, study: Study, top: int | None = None, *, ci: bool = False
) -> pd.DataFrame:
    """The study's configurations ranked by seed mean (a searched study's: those proposed);
    with `ci`, `best_with_intervals`'s columns too."""
    axes = observed_axes(frame, list(study.search)) if study.searched else study.axes
    rank = best_with_intervals if ci else best_configs
    return rank(frame, axes=axes, metric=study.metric, direction=study.direction, top=top)
