"""Per-domain tables (domain generalization): methods x held-out domains, plus the average."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sweeper.report.grid import cell_samples, grid_tables
from sweeper.report.intervals import LEVEL, cell_interval, overlaps
from sweeper.stats import stratified_avg_interval

#: the label of the per-domain tables' last column: the plain mean of the domain columns.
DOMAIN_AVERAGE = "Avg"


@dataclass(frozen=True)
class DomainTable:
    """A per-domain table (the layout of domain-generalization papers): one row per method,
    one column per held-out domain, then their average.

    Attributes:
        group: the values of the other axes this table is for; empty when there are none.
        row_axis: the axis whose values label the rows (e.g. ``method``).
        col_axis: the held-out-domain axis whose values label the columns (e.g. ``target``).
        rows: the row axis values, in axis order.
        domains: the column axis values, in axis order (the ``Avg`` column comes after them).
        means: ``means[i][j]``, the mean over seeds of cell (i, j); None without trials.
        sems: ``sems[i][j]``, its standard error (std with ddof=1 over sqrt(n)); None below 2.
        counts: ``counts[i][j]``, completed trials in cell (i, j).
        expected: trials in a complete cell (seeds times the sizes of pooled axes).
        avg: ``avg[i]``, the plain mean of row i's domain means (every domain weighs the same,
            as in the tutorial's "Avg"); None unless every domain of the row has a mean.
        avg_sem: ``sqrt(sum(sem_j ** 2)) / n_domains``, the domains being trained
            independently; None unless every domain of the row has a sem.
        best: per column (the domains, then Avg), the row with the best mean under
            `direction` (ties: the first row); None for a column without values.
        metric: the metric shown; direction: ``minimize`` or ``maximize``.
        ci_low: per row, the lower ends of the 95% intervals of the domain means
            (`sweeper.stats.interval`) and, last, of Avg (`sweeper.stats.stratified_avg_interval`);
            None where there is no interval; the attribute is None unless ``ci=True``.
        ci_high: the upper ends, likewise.
        tied: per row and column (the domains, then Avg), whether the interval overlaps that
            column's best row's (the best row itself: False); None unless ``ci=True``.
        selection: ``oracle`` or ``source`` when each (row, domain) cell holds the trials of
            one hyperparameter configuration chosen by `sweeper.compare.select`; else None.
        chosen: per row and domain the chosen hyperparameters (axis -> value); None without
            a selection.
    """

    group: dict[str, Any]
    row_axis: str
    col_axis: str
    rows: list[Any]
    domains: list[Any]
    means: list[list[float | None]]
    sems: list[list[float | None]]
    counts: list[list[int]]
    expected: int
    avg: list[float | None]
    avg_sem: list[float | None]
    best: list[int | None]
    metric: str
    direction: str
    ci_low: list[list[float | None]] | None = None
    ci_high: list[list[float | None]] | None = None
    tied: list[list[bool]] | None = None
    selection: str | None = None
    chosen: list[list[dict[str, Any]]] | None = None


def domain_tables(
    df: pd.DataFrame,
    *,
    axes: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    metric: str,
    direction: str,
    rows: str = "method",
    cols: str = "target",
    groups: Sequence[str] | None = None,
    ci: bool = False,
) -> list[DomainTable]:
    """Per-domain tables: the metric's mean (and sem) over seeds per (row, held-out domain).

    Args:
        df: the study's trials, as the store returns them.
        axes: the sweep axes in file order with their values.
        seeds: the study's replicate seeds.
        metric: the metric column (the score on the held-out domain).
        direction: ``"minimize"`` or ``"maximize"``; decides the best row per column.
        rows: the axis of the rows (default ``method``).
        cols: the held-out-domain axis (default ``target``).
        groups: axes to make one table per combination of; default every other axis. Axes in
            none of rows, cols and groups are pooled.
        ci: fill `DomainTable.ci_low`, `ci_high` and `tied`.

    Returns:
        One table per combination of the groups' values (the first group outermost).

    Raises:
        UnknownNameError: `direction` or an axis is not known, an axis is used twice, or trials
            lack an axis or the metric.
    """
    means, sems = (
        grid_tables(
            df,
            axes=axes,
            seeds=seeds,
            metric=metric,
            direction=direction,
            rows=rows,
            cols=cols,
            groups=groups,
            agg=agg,
        )
        for agg in ("mean", "sem")
    )
    sign = 1.0 if direction == "minimize" else -1.0
    group_axes = [a for a in axes if a not in (rows, cols)] if groups is None else list(groups)
    cells = cell_samples(df, axes, metric, [*group_axes, rows, cols]) if ci else {}
    combos = itertools.product(*(range(len(axes[g])) for g in group_axes))
    out = []
    for m, s, combo in zip(means, sems, combos, strict=True):
        avg: list[float | None] = []
        avg_sem: list[float | None] = []
        for row_means, row_sems in zip(m.values, s.values, strict=True):
            known = [v for v in row_means if v is not None]
            known_sems = [v for v in row_sems if v is not None]
            full = bool(known) and len(known) == len(row_means)
            avg.append(float(np.mean(known)) if full else None)
            with_sem = full and len(known_sems) == len(row_sems)
            avg_sem.append(
                math.sqrt(sum(v * v for v in known_sems)) / len(known_sems) if with_sem else None
            )
        columns = [[row[j] for row in m.values] for j in range(len(m.cols))] + [avg]
        best = []
        for column in columns:
            ranked = [(sign * v, i) for i, v in enumerate(column) if v is not None]
            best.append(min(ranked)[1] if ranked else None)
        extra: dict[str, Any] = {}
        if ci:
            extra = _intervals(cells, combo, len(m.rows), len(m.cols), best)
        out.append(
            DomainTable(
                group=m.group,
                row_axis=rows,
                col_axis=cols,
                rows=m.rows,
                domains=m.cols,
                means=m.values,
                sems=s.values,
                counts=m.counts,
                expected=m.expected,
                avg=avg,
                avg_sem=avg_sem,
                best=best,
                metric=metric,
                direction=direction,
                **extra,
            )
        )
    return out


def _intervals(
    cells: Mapping[tuple[int, ...], np.ndarray],
    combo: tuple[int, ...],
    n_rows: int,
    n_domains: int,
    best: list[int | None],
) -> dict[str, Any]:
    """ci_low, ci_high and tied of one table: t or bootstrap per cell, stratified for Avg."""
    empty = np.empty(0)
    lows: list[list[float | None]] = []
    highs: list[list[float | None]] = []
    for i in range(n_rows):
        row = [cells.get((*combo, i, j), empty) for j in range(n_domains)]
        ends = [cell_interval(x) for x in row]
        avg = stratified_avg_interval(dict(enumerate(row)), LEVEL)
        ends.append((avg.low, avg.high))
        lows.append([None if math.isnan(lo) else lo for lo, _ in ends])
        highs.append([None if math.isnan(hi) else hi for _, hi in ends])
    tied = [[False] * (n_domains + 1) for _ in range(n_rows)]
    for j, b in enumerate(best):
        if b is None:
            continue
        best_low, best_high = lows[b][j], highs[b][j]
        if best_low is None or best_high is None:
            continue
        for i in range(n_rows):
            tied[i][j] = i != b and overlaps(lows[i][j], highs[i][j], best_low, best_high)
    return {"ci_low": lows, "ci_high": highs, "tied": tied}
