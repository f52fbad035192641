"""The averaged grid tables: one rows x cols table of seed aggregates per group of axes."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sweeper.errors import UnknownNameError
from sweeper.registry import check_name
from sweeper.report.cells import AGGREGATES, DIRECTIONS, aggregate, best_cell, code, completed
from sweeper.report.intervals import interval_matrix, tied_marks


@dataclass(frozen=True)
class GridTable:
    """One table of a grid report: the metric aggregated per (row value, column value) cell.

    Attributes:
        group: the values of the grouping axes this table is for, in grouping order, e.g.
            ``{"optimizer": "adam", "sam_rho": 0.02}``; empty when there are no grouping axes.
        row_axis: the axis whose values label the rows.
        col_axis: the axis whose values label the columns, or None for a single column holding
            the metric (then ``cols == [metric]``).
        rows: the row axis values, in axis order.
        cols: the column axis values, in axis order.
        values: ``values[i][j]`` is the aggregate of the metric over the completed trials of cell
            (i, j), or None where it is undefined (no trials; std and sem of fewer than two).
            For ``agg == "count"`` it is the count as a float, 0.0 for an empty cell.
        counts: ``counts[i][j]`` is the number of completed trials in cell (i, j).
        expected: the number of trials a complete cell holds: the number of seeds times the
            product of the sizes of the pooled axes.
        best: index (i, j) of the cell with the best mean under the study's direction, whatever
            `agg` is shown; None when no cell has a trial. Ties go to the cell with more trials,
            then to the first in row-major order.
        metric: the metric aggregated.
        agg: the aggregate shown, one of `AGGREGATES`.
        pooled: the axes neither shown nor grouped on, whose values are pooled into each cell.
        sems: per cell the standard error of the mean (ddof=1; None below two trials); None
            unless asked for (``sem=True``).
        ci_low: per cell the lower end of the 95% interval of the mean
            (`sweeper.stats.interval`; None below two trials); None unless ``ci=True``.
        ci_high: the upper ends, likewise.
        tied: per cell whether its interval overlaps the best cell's (the best cell: False);
            None unless ``ci=True``.
    """

    group: dict[str, Any]
    row_axis: str
    col_axis: str | None
    rows: list[Any]
    cols: list[Any]
    values: list[list[float | None]]
    counts: list[list[int]]
    expected: int
    best: tuple[int, int] | None
    metric: str
    agg: str
    pooled: tuple[str, ...] = ()
    sems: list[list[float | None]] | None = None
    ci_low: list[list[float | None]] | None = None
    ci_high: list[list[float | None]] | None = None
    tied: list[list[bool]] | None = None


def grid_tables(
    df: pd.DataFrame,
    *,
    axes: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    metric: str,
    direction: str,
    rows: str = "lr",
    cols: str | None = "weight_decay",
    groups: Sequence[str] | None = None,
    agg: str = "mean",
    sem: bool = False,
    ci: bool = False,
) -> list[GridTable]:
    """Aggregate the metric over seeds into one rows x cols table per combination of groups.

    Args:
        df: the study's trials, as the store returns them.
        axes: the sweep axes in file order with their values.
        seeds: the study's replicate seeds.
        metric: the metric column to aggregate.
        direction: ``"minimize"`` or ``"maximize"``; decides the best cell.
        rows: the axis whose values label the rows.
        cols: the axis whose values label the columns, or None for a single column holding the
            metric (handy for a study with one axis).
        groups: the axes to make one table per combination of; default: every axis other than
            `rows` and `cols`, in axis order. Axes in none of rows, cols and groups are pooled.
            Tables come in the product order of the groups' values (the first group outermost).
        agg: the aggregate shown in the cells, one of `AGGREGATES`.
        sem: fill `GridTable.sems` (the mean's standard error per cell).
        ci: fill `GridTable.ci_low`, `ci_high` and `tied` (95% intervals of the means).

    Returns:
        The tables; every axis value has its row, column or table, even without trials.

    Raises:
        UnknownNameError: `agg`, `direction` or an axis name is not known, or an axis is used
            twice; or trials exist but lack an axis or the metric column.
    """
    check_name("aggregate", agg, AGGREGATES)
    check_name("direction", direction, DIRECTIONS)
    axis_names = list(axes)
    check_name("axis", rows, axis_names)
    if cols is not None:
        check_name("axis", cols, axis_names)
    shown = [rows] if cols is None else [rows, cols]
    if groups is None:
        group_axes = [a for a in axis_names if a not in shown]
    else:
        group_axes = [check_name("axis", g, axis_names) for g in groups]
    used = shown + group_axes
    for name in used:
        if used.count(name) > 1:
            raise UnknownNameError(f"axis '{name}' is used more than once in rows, cols, groups")
    pooled = tuple(a for a in axis_names if a not in used)
    expected = len(seeds) * math.prod(len(axes[a]) for a in pooled)

    cells = cell_samples(df, axes, metric, group_axes + shown)

    row_values = list(axes[rows])
    col_values = [metric] if cols is None else list(axes[cols])
    empty = np.empty(0)
    tables = []
    for combo in itertools.product(*(range(len(axes[g])) for g in group_axes)):
        values: list[list[float | None]] = []
        counts: list[list[int]] = []
        means: list[list[float | None]] = []
        grid: list[list[np.ndarray]] = []
        for i in range(len(row_values)):
            # With cols=None the single column is keyed by the row alone.
            tails = [(i,)] if cols is None else [(i, j) for j in range(len(col_values))]
            samples = [cells.get(combo + t, empty) for t in tails]
            values.append([aggregate(s, agg) for s in samples])
            counts.append([len(s) for s in samples])
            means.append([aggregate(s, "mean") for s in samples])
            grid.append(samples)
        best = best_cell(means, counts, direction)
        extra: dict[str, Any] = {}
        if sem:
            extra["sems"] = [[aggregate(s, "sem") for s in row] for row in grid]
        if ci:
            lows, highs = interval_matrix(grid)
            extra.update(ci_low=lows, ci_high=highs, tied=tied_marks(lows, highs, best))
        tables.append(
            GridTable(
                group={g: axes[g][k] for g, k in zip(group_axes, combo, strict=True)},
                row_axis=rows,
                col_axis=cols,
                rows=row_values,
                cols=col_values,
                values=values,
                counts=counts,
                expected=expected,
                best=best,
                metric=metric,
                agg=agg,
                pooled=pooled,
                **extra,
            )
        )
    return tables


def cell_samples(
    df: pd.DataFrame, axes: Mapping[str, Sequence[Any]], metric: str, key_axes: Sequence[str]
) -> dict[tuple[int, ...], np.ndarray]:
    """The metric values of the completed trials per combination of `key_axes` value indices
    (cells without trials are absent)."""
    trials = completed(df, axes, metric)
    cells: dict[tuple[int, ...], np.ndarray] = {}
    if len(trials):
        grouped = trials.groupby([code(a) for a in key_axes], sort=False)[metric]
        for key, series in grouped:
            cells[tuple(int(k) for k in key)] = series.to_numpy(dtype=float)
    return cells
