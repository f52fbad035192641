"""Numbers for reports: grid tables, ranked configurations and state counts from a trials frame.

Everything here takes the trials DataFrame the store produces (one row per trial: ``id``,
``state``, ``seed``, ..., one column per task parameter, one per metric) plus the study
description, and returns values; `sweeper.render` turns them into text.

Only trials in state ``completed`` with a value for the metric count. A trial's parameter values
are matched to the study's axis values exactly, falling back to a 1e-9 relative tolerance for
floats; a trial whose values lie outside the axes is left out of every table.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sweeper.errors import UnknownNameError

AGGREGATES = ("mean", "std", "sem", "min", "max", "count")
DIRECTIONS = ("minimize", "maximize")
STATES = ("queued", "running", "completed", "failed", "pruned")
# The store's per-trial columns; the others are task parameters and metrics.
_TRIAL_COLUMNS = ("id", "state", "seed", "attempts", "host", "duration", "error")


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


def check_name(kind: str, name: str, valid: Sequence[str]) -> str:
    """Return `name` if it is one of `valid`.

    Raises:
        UnknownNameError: ``unknown <kind> '<name>'; choose one of: <sorted valid names>``.
    """
    if name not in valid:
        choices = ", ".join(sorted(valid)) or "(none)"
        raise UnknownNameError(f"unknown {kind} '{name}'; choose one of: {choices}")
    return name


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

    trials = _completed(df, axes, metric)
    key_axes = group_axes + shown
    cells: dict[tuple[int, ...], np.ndarray] = {}
    if len(trials):
        grouped = trials.groupby([_code(a) for a in key_axes], sort=False)[metric]
        for key, series in grouped:
            cells[tuple(int(k) for k in key)] = series.to_numpy(dtype=float)

    row_values = list(axes[rows])
    col_values = [metric] if cols is None else list(axes[cols])
    empty = np.empty(0)
    tables = []
    for combo in itertools.product(*(range(len(axes[g])) for g in group_axes)):
        values: list[list[float | None]] = []
        counts: list[list[int]] = []
        means: list[list[float | None]] = []
        for i in range(len(row_values)):
            # With cols=None the single column is keyed by the row alone.
            tails = [(i,)] if cols is None else [(i, j) for j in range(len(col_values))]
            samples = [cells.get(combo + t, empty) for t in tails]
            values.append([_aggregate(s, agg) for s in samples])
            counts.append([len(s) for s in samples])
            means.append([_aggregate(s, "mean") for s in samples])
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
                best=_best(means, counts, direction),
                metric=metric,
                agg=agg,
                pooled=pooled,
            )
        )
    return tables


def best_configs(
    df: pd.DataFrame,
    *,
    axes: Mapping[str, Sequence[Any]],
    metric: str,
    direction: str,
    top: int | None = None,
) -> pd.DataFrame:
    """Rank the configurations (combinations of axis values) by their mean over seeds.

    Args:
        df: the study's trials, as the store returns them.
        axes: the sweep axes in file order with their values.
        metric: the metric column to rank on.
        direction: ``"minimize"`` or ``"maximize"``.
        top: keep only the first `top` configurations; None keeps all.

    Returns:
        One row per configuration with at least one completed trial, best first (ties: more
        seeds first, then axis order), with columns: the axes in order, then ``mean``, ``sem``
        (std / sqrt(n)), ``std`` (ddof=1; NaN, like sem, when n == 1) and ``n`` (completed
        seeds). The index is 0, 1, ...

    Raises:
        UnknownNameError: `direction` is not known, or trials exist but lack an axis or the
            metric column.
        ValueError: `top` is below 1.
    """
    check_name("direction", direction, DIRECTIONS)
    if top is not None and top < 1:
        raise ValueError(f"top must be >= 1 (got {top})")
    axis_names = list(axes)
    columns = [*axis_names, "mean", "sem", "std", "n"]
    trials = _completed(df, axes, metric)
    if not len(trials):
        return pd.DataFrame({c: pd.Series(dtype=float if c != "n" else int) for c in columns})

    keys = [_code(a) for a in axis_names] or [trials["state"].rename("_all")]
    stats = trials.groupby(keys, sort=True)[metric].agg(["mean", "std", "count"]).reset_index()
    stats = stats.sort_values(
        ["mean", "count"],
        ascending=[direction == "minimize", False],
        kind="stable",  # groupby sorted by axis codes, so ties stay in axis order
    )
    out = pd.DataFrame(
        {a: [axes[a][int(k)] for k in stats[_code(a)]] for a in axis_names},
        index=range(len(stats)),
    )
    n = stats["count"].to_numpy(dtype=int)
    std = stats["std"].to_numpy(dtype=float)
    out["mean"] = stats["mean"].to_numpy(dtype=float)
    out["sem"] = np.where(n > 1, std / np.sqrt(n), np.nan)
    out["std"] = std
    out["n"] = n
    return out if top is None else out.head(top)


def status_counts(df: pd.DataFrame) -> dict[str, int]:
    """Count trials per state.

    Returns:
        Every state of `STATES` (0 when absent), in that order, then any other state found.
    """
    counts = dict.fromkeys(STATES, 0)
    if "state" in df.columns:
        for state, n in df["state"].value_counts(sort=False).items():
            counts[str(state)] = int(n)
    return counts


def _code(axis: str) -> str:
    """Column name holding a trial's index into the values of `axis`."""
    return f"__code_{axis}"


def _completed(df: pd.DataFrame, axes: Mapping[str, Sequence[Any]], metric: str) -> pd.DataFrame:
    """Completed trials with a metric value and axis values all in `axes`, plus code columns."""
    if not len(df) or "state" not in df.columns:
        return pd.DataFrame(columns=[metric, *(_code(a) for a in axes)])
    trials = df[df["state"] == "completed"]
    if not len(trials):
        return pd.DataFrame(columns=[metric, *(_code(a) for a in axes)])
    if metric not in trials.columns:
        known = [c for c in df.columns if c not in axes and c not in _TRIAL_COLUMNS]
        check_name("metric", metric, [str(c) for c in known])
    missing = [a for a in axes if a not in trials.columns]
    if missing:
        raise UnknownNameError(
            f"axis '{missing[0]}' is not a column of the trials; "
            f"columns: {', '.join(str(c) for c in df.columns)}"
        )
    trials = trials[trials[metric].notna()].copy()
    # The store's attrs (lists) would be deep-copied into every group of a groupby on this
    # frame: a third of the time of a 100,000-trial table.
    trials.attrs = {}
    keep = np.ones(len(trials), dtype=bool)
    for axis, values in axes.items():
        column = trials[axis]
        if column.dtype == object:  # mixed types: match item by item
            codes = _match(column.tolist(), list(values))
        else:  # one type (numbers, strings): match each distinct value once
            found, uniques = pd.factorize(column)
            codes = np.append(_match(uniques.tolist(), list(values)), -1)[found]
        trials[_code(axis)] = codes
        keep &= codes >= 0
    return trials[keep]


def _match(column: list[Any], values: list[Any]) -> np.ndarray:
    """Index of each entry of `column` in `values`, or -1.

    Exact (hash) equality first; floats that came back through JSON or a database are the same
    doubles, but a 1e-9 relative tolerance guards against values computed another way.
    """
    exact: dict[Any, int] = {}
    for i, v in enumerate(values):
        exact.setdefault(v, i)
    floats = [(i, float(v)) for i, v in enumerate(values) if _is_real(v)]
    found: dict[Any, int] = {}
    codes = np.full(len(column), -1, dtype=np.int64)
    for n, item in enumerate(column):
        try:
            code = exact.get(item, -1)
        except TypeError:  # an unhashable value (a list) cannot be an axis value
            continue
        if code < 0 and _is_real(item):
            if item not in found:
                close = [i for i, v in floats if math.isclose(v, float(item), rel_tol=1e-9)]
                found[item] = close[0] if close else -1
            code = found[item]
        codes[n] = code
    return codes


def _is_real(value: Any) -> bool:
    """A float-like number, bools excluded (True must not match 1.0 by tolerance)."""
    return isinstance(value, float | int | np.floating | np.integer) and not isinstance(
        value, bool | np.bool_
    )


def _aggregate(samples: np.ndarray, agg: str) -> float | None:
    """One aggregate of a cell's metric values; None where it is undefined."""
    n = len(samples)
    if agg == "count":
        return float(n)
    if n == 0 or (agg in ("std", "sem") and n < 2):
        return None
    if agg == "mean":
        return float(np.mean(samples))
    if agg == "min":
        return float(np.min(samples))
    if agg == "max":
        return float(np.max(samples))
    std = float(np.std(samples, ddof=1))
    return std if agg == "std" else std / math.sqrt(n)


def _best(
    means: list[list[float | None]], counts: list[list[int]], direction: str
) -> tuple[int, int] | None:
    """Index of the best mean under `direction`; ties go to more trials, then row-major order."""
    sign = 1.0 if direction == "minimize" else -1.0
    best: tuple[int, int] | None = None
    best_key: tuple[float, int] | None = None
    for i, row in enumerate(means):
        for j, mean in enumerate(row):
            if mean is None or math.isnan(mean):
                continue
            key = (sign * mean, -counts[i][j])
            if best_key is None or key < best_key:
                best, best_key = (i, j), key
    return best


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
    out = []
    for m, s in zip(means, sems, strict=True):
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
            )
        )
    return out


def binned_axes(
    df: pd.DataFrame, search: Mapping[str, Mapping[str, Any]], bins: int
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Make a searched study's parameters into table axes by binning them.

    A categorical keeps its choices; a number falls into one of `bins` equal-width bins over
    its distribution's range (equal in log space for a log distribution), labelled by their
    edges, e.g. ``1e-05..0.0001``; with a floor, 0 gets a bin of its own, labelled ``0``, and the
    bins span floor..high.

    Args:
        df: the study's trials, as the store returns them.
        search: the study's distributions (`sweeper.study.Study.search`).
        bins: how many bins per numeric parameter (>= 1).

    Returns:
        A copy of `df` whose searched columns hold the labels (as strings), and the axes:
        name -> labels in order.

    Raises:
        ValueError: `bins` is below 1.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1 (got {bins})")
    from sweeper.render import format_axis_value

    out = df.copy()
    axes: dict[str, list[str]] = {}
    for name, dist in search.items():
        if dist["type"] == "categorical":
            labels = [format_axis_value(c) for c in dist["choices"]]
            if name in out.columns:
                out[name] = [format_axis_value(v) for v in out[name]]
            axes[name] = labels
            continue
        floor = dist.get("floor")
        low, high = float(floor if floor is not None else dist["low"]), float(dist["high"])
        if dist["log"]:
            edges = np.logspace(math.log10(low), math.log10(high), bins + 1)
        else:
            edges = np.linspace(low, high, bins + 1)
        labels = [
            f"{format_axis_value(float(f'{a:.3g}'))}..{format_axis_value(float(f'{b:.3g}'))}"
            for a, b in itertools.pairwise(edges)
        ]
        if floor is not None:
            labels = ["0", *labels]
        if name in out.columns:
            values = out[name].to_numpy(dtype=float)
            # Interior edges only: a value at the top edge (or beyond, by rounding) stays in.
            index = np.searchsorted(edges[1:-1], values, side="right")
            texts = [labels[i + (1 if floor is not None else 0)] for i in index]
            if floor is not None:
                texts = ["0" if v == 0 else t for v, t in zip(values, texts, strict=True)]
            out[name] = texts
        axes[name] = labels
    return out, axes


def observed_axes(df: pd.DataFrame, names: Sequence[str]) -> dict[str, list[Any]]:
    """Axes from the values trials actually hold, in order of first appearance: what a
    searched study's configurations are ranked over."""
    done = df[df["state"] == "completed"] if "state" in df.columns else df
    return {n: list(dict.fromkeys(done[n].tolist())) if n in done.columns else [] for n in names}
