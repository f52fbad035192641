"""Configurations (combinations of parameter values) with their seed values, and how each
parameter's values are best scaled: shared by the plots, the HTML report and the Optuna export.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

#: how a parameter's axis is drawn: by category, on a log scale, or linearly.
Scale = Literal["categorical", "log", "linear"]


@dataclass(frozen=True)
class Config:
    """One configuration's completed trials.

    Attributes:
        params: parameter name -> value, in the order asked for.
        values: the metric of each completed trial, in trial id order.
        seeds: their seeds; ids: their trial ids.
    """

    params: dict[str, Any]
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    ids: tuple[int, ...]

    @property
    def mean(self) -> float:
        """The seed mean of the metric."""
        return float(np.mean(self.values))


def configurations(
    frame: pd.DataFrame, params: Sequence[str], metric: str, direction: str
) -> list[Config]:
    """The configurations among the completed trials of `frame` with a value for `metric`,
    best seed mean first (ties keep first-appearance order).

    Args:
        frame: a study's trials (`Store.frame`): ``id``, ``state``, ``seed``, parameters, metric.
        params: the parameters that tell configurations apart (a grid's axes, a search's space).
        metric: the metric column; direction: ``minimize`` or ``maximize``.
    """
    if not len(frame) or metric not in frame.columns:
        return []
    done = frame[(frame["state"] == "completed") & frame[metric].notna()].sort_values("id")
    groups: dict[tuple[Any, ...], list[tuple[float, int, int]]] = {}
    for row in zip(*(done[p] for p in params), done[metric], done["seed"], done["id"], strict=True):
        key = tuple(_plain(v) for v in row[: len(params)])
        groups.setdefault(key, []).append((float(row[-3]), int(row[-2]), int(row[-1])))
    configs = [
        Config(
            params=dict(zip(params, key, strict=True)),
            values=tuple(v for v, _, _ in trials),
            seeds=tuple(s for _, s, _ in trials),
            ids=tuple(i for _, _, i in trials),
        )
        for key, trials in groups.items()
    ]
    sign = 1.0 if direction == "minimize" else -1.0
    return sorted(configs, key=lambda c: sign * c.mean)


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so configurations hash and print plainly."""
    return value.item() if isinstance(value, np.generic) else value


def scale_of(values: Sequence[Any], log: bool | None = None) -> Scale:
    """How to draw a parameter: strings and booleans by category; numbers on a log scale when
    `log` says so or (`log` None) when their positive values span at least two decades and the
    rest are zero; otherwise linearly."""
    if any(isinstance(v, str | bool | np.bool_) or v is None for v in values):
        return "categorical"
    numbers = [float(v) for v in values]
    positive = [v for v in numbers if v > 0]
    if log is not None:
        return "log" if log else "linear"
    if (
        positive
        and all(v >= 0 for v in numbers)
        and math.log10(max(positive) / min(positive)) >= 2 - 1e-9
    ):
        return "log"
    return "linear"


def grid_distribution(values: Sequence[Any]) -> BaseDistribution:
    """The Optuna distribution of a grid axis: a log float over its range when all its values
    are positive and span at least two decades, else a categorical of its values (what
    optuna.visualization and optuna-dashboard draw and what fANOVA splits on)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    plain = [_plain(v) for v in values]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in plain)
    if numeric and all(v > 0 for v in plain) and scale_of(plain) == "log":
        return FloatDistribution(float(min(plain)), float(max(plain)), log=True)
    return CategoricalDistribution(list(dict.fromkeys(plain)))


def varying(axes: Mapping[str, Sequence[Any]]) -> list[str]:
    """The axes with more than one value (the others tell no configurations apart)."""
    return [name for name, values in axes.items() if len(set(map(repr, values))) > 1]


def label(value: Any) -> str:
    """A parameter value as a compact label: floats with ``:g`` (``0``, ``0.0001``, ``3e-05``)."""
    if isinstance(value, float | np.floating) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value)
