"""A stored study's tables with the layout the CLI, the plots and the HTML report all use:
which axes make rows, columns and tables, and how a searched study's parameters are binned."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sweeper.errors import SweeperError
from sweeper.report.best import best_configs, observed_axes
from sweeper.report.bins import binned_axes
from sweeper.report.domains import DomainTable, domain_tables
from sweeper.report.grid import GridTable, grid_tables
from sweeper.study import Study


def study_grid_tables(
    frame: pd.DataFrame,
    study: Study,
    *,
    agg: str = "mean",
    rows: str | None = None,
    cols: str | None = None,
    groups: list[str] | None = None,
    bins: int = 4,
) -> list[GridTable]:
    """The study's grid tables: rows lr, columns weight decay, one table per other axis value
    (defaults); a searched study's numeric parameters binned (`bins`), its categorical ones
    splitting tables.

    Args:
        frame: the study's trials with a column named after its metric.

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
    )


def study_domain_tables(
    frame: pd.DataFrame,
    study: Study,
    *,
    rows: str | None = None,
    cols: str | None = None,
    groups: list[str] | None = None,
) -> list[DomainTable]:
    """The study's per-domain tables: rows the methods (default axis ``method``), columns the
    held-out domains (default ``target``) and their average.

    Raises:
        SweeperError: the study lacks the row or column axis.
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
    return domain_tables(
        frame,
        axes=study.axes,
        seeds=list(study.seeds),
        metric=study.metric,
        direction=study.direction,
        rows=row_axis,
        cols=col_axis,
        groups=groups,
    )


def study_best(frame: pd.DataFrame, study: Study, top: int | None = None) -> pd.DataFrame:
    """The study's configurations ranked by seed mean (a searched study's: those proposed)."""
    axes = observed_axes(frame, list(study.search)) if study.searched else study.axes
    return best_configs(frame, axes=axes, metric=study.metric, direction=study.direction, top=top)
