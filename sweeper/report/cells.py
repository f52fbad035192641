"""Shared pieces of the report numbers: name checks, matching trials to axis values, cell
aggregates, axis labels.

Only trials in state ``completed`` with a value for the metric count. A trial's parameter values
are matched to the study's axis values exactly, falling back to a 1e-9 relative tolerance for
floats; a trial whose values lie outside the axes is left out of every table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweeper.errors import UnknownNameError
from sweeper.registry import check_name

AGGREGATES = ("mean", "std", "sem", "min", "max", "count")
DIRECTIONS = ("minimize", "maximize")
# The store's per-trial columns; the others are task parameters and metrics.
_TRIAL_COLUMNS = ("id", "state", "seed", "attempts", "host", "duration", "error")


def axis_label(value: Any) -> str:
    """An axis value as a compact label: floats with ``:g`` (``0``, ``0.0001``, ``3e-05``)."""
    if isinstance(value, float | np.floating) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value)


def code(axis: str) -> str:
    """Column name holding a trial's index into the values of `axis`."""
    return f"__code_{axis}"


def completed(df: pd.DataFrame, axes: Mapping[str, Sequence[Any]], metric: str) -> pd.DataFrame:
    """Completed trials with a metric value and axis values all in `axes`, plus code columns."""
    if not len(df) or "state" not in df.columns:
        return pd.DataFrame(columns=[metric, *(code(a) for a in axes)])
    trials = df[df["state"] == "completed"]
    if not len(trials):
        return pd.DataFrame(columns=[metric, *(code(a) for a in axes)])
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
        trials[code(axis)] = codes
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


def aggregate(samples: np.ndarray, agg: str) -> float | None:
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


def best_cell(
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
