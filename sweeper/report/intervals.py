"""Intervals over seeds for the report tables: per-cell confidence intervals, "tied for best"
marks, and ranked configurations with their intervals.

The intervals are `sweeper.stats.interval` (Student t below ten values, the percentile
bootstrap from ten on); a cell of one value has no interval. A cell is *tied for best* when
its interval overlaps the best cell's: the seeds cannot tell the two apart at that level. That
is a screening rule, not a test; `sweeper compare` gives the paired tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from sweeper.report.best import best_configs
from sweeper.report.cells import code, completed
from sweeper.stats import interval

#: the confidence level of every interval the tables show.
LEVEL = 0.95
Matrix = list[list[float | None]]


def cell_interval(samples: npt.NDArray[np.float64], level: float = LEVEL) -> tuple[float, float]:
    """The interval of a cell's mean; NaN ends below two values."""
    ci = interval(samples, level)
    return ci.low, ci.high


def interval_matrix(
    samples: Sequence[Sequence[npt.NDArray[np.float64]]], level: float = LEVEL
) -> tuple[Matrix, Matrix]:
    """Lower and upper ends per cell of a rows x cols grid of samples; None without interval."""
    lows: Matrix = []
    highs: Matrix = []
    for row in samples:
        ends = [cell_interval(s, level) for s in row]
        lows.append([_known(lo) for lo, _ in ends])
        highs.append([_known(hi) for _, hi in ends])
    return lows, highs


def overlaps(low: float | None, high: float | None, best_low: float, best_high: float) -> bool:
    """Whether [low, high] and [best_low, best_high] share a point (None: no interval, no)."""
    if low is None or high is None:
        return False
    return low <= best_high and best_low <= high


def tied_marks(lows: Matrix, highs: Matrix, best: tuple[int, int] | None) -> list[list[bool]]:
    """Per cell: whether its interval overlaps the best cell's (the best cell itself: False).

    Without a best cell, or when the best cell has no interval (one seed), nothing is marked:
    there is nothing to be tied with.
    """
    marks = [[False] * len(row) for row in lows]
    if best is None:
        return marks
    bi, bj = best
    best_low, best_high = lows[bi][bj], highs[bi][bj]
    if best_low is None or best_high is None:
        return marks
    for i, row in enumerate(lows):
        for j in range(len(row)):
            if (i, j) != best:
                marks[i][j] = overlaps(lows[i][j], highs[i][j], best_low, best_high)
    return marks


def best_with_intervals(
    df: pd.DataFrame,
    *,
    axes: Mapping[str, Sequence[Any]],
    metric: str,
    direction: str,
    top: int | None = None,
    level: float = LEVEL,
) -> pd.DataFrame:
    """`best_configs` with each configuration's interval: columns ``sd`` (the same as ``std``,
    ddof=1), ``ci_low``, ``ci_high`` (`sweeper.stats.interval`; NaN for one seed) and ``tied``
    (the interval overlaps the first row's) appended.

    Raises:
        as `best_configs`.
    """
    ranked = best_configs(df, axes=axes, metric=metric, direction=direction, top=top)
    names = list(axes)
    trials = completed(df, axes, metric)
    samples: dict[tuple[int, ...], npt.NDArray[np.float64]] = {}
    if len(trials):
        keys = [code(a) for a in names] or [trials["state"].rename("_all")]
        for key, series in trials.groupby(keys, sort=False)[metric]:
            k = key if isinstance(key, tuple) else (key,)
            samples[tuple(int(v) for v in k) if names else ()] = series.to_numpy(dtype=float)
    lows: list[float] = []
    highs: list[float] = []
    for row in ranked.itertuples(index=False):
        values = dict(zip(ranked.columns, row, strict=True))
        key = tuple(_index(axes[a], values[a]) for a in names)
        low, high = cell_interval(samples.get(key, np.empty(0)), level)
        lows.append(low)
        highs.append(high)
    out = ranked.copy()
    out["sd"] = out["std"]
    out["ci_low"] = np.asarray(lows, dtype=float)
    out["ci_high"] = np.asarray(highs, dtype=float)
    tied = [False] * len(out)
    if len(out) and np.isfinite(lows[0]):
        tied = [i > 0 and overlaps(_known(lo), _known(hi), lows[0], highs[0])
                for i, (lo, hi) in enumerate(zip(lows, highs, strict=True))]  # fmt: skip
    out["tied"] = tied
    return out


def _index(values: Sequence[Any], value: Any) -> int:
    """The position of `value` among an axis's values (`best_configs` returns those objects)."""
    for k, v in enumerate(values):
        if v is value or v == value:
            return k
    raise ValueError(f"{value!r} is not an axis value")  # unreachable: values come from axes


def _known(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)
