"""The 95% interval of a sample: the one place the plots compute an interval.

The same numbers as ``sweeper.stats.interval`` (Student t below ten values, its bootstrap from
ten on; a test holds them equal), with the t quantile from ``scipy.special.stdtrit`` (what
``scipy.stats.t.ppf`` calls): importing scipy.stats takes about two seconds, half the budget
of `sweeper report`, and seeds are almost always fewer than ten.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: from this many values on, `interval` is sweeper.stats' bootstrap (BOOTSTRAP_MIN_N there).
_BOOTSTRAP_MIN_N = 10


@dataclass(frozen=True)
class Interval:
    """Mean of `n` values with a two-sided 95% interval [low, high].

    With fewer than two values sd, sem, low and high are NaN (an interval needs a spread).
    """

    mean: float
    sd: float
    sem: float
    n: int
    low: float
    high: float
    method: str = "t"


def interval(values: Sequence[float]) -> Interval:
    """The mean and 95% interval of the finite `values`, as `sweeper.stats.interval` gives them
    (Student t for 2..9 values, computed here; its percentile bootstrap from 10 on)."""
    x = np.array([float(v) for v in values], dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    nan = math.nan
    if n >= _BOOTSTRAP_MIN_N:
        from sweeper.stats import interval as stats_interval

        got = stats_interval(x)
        return Interval(got.mean, got.sd, got.sem, got.n, got.low, got.high, got.method)
    if n == 0:
        return Interval(nan, nan, nan, 0, nan, nan, "none")
    if n == 1:
        return Interval(float(x[0]), nan, nan, 1, nan, nan, "none")
    if np.all(x == x[0]):
        v = float(x[0])
        return Interval(v, 0.0, 0.0, n, v, v, "t")
    mean = float(np.mean(x))
    sd = float(np.std(x, ddof=1))
    sem = sd / math.sqrt(n)
    half = t_factor(n) * sem
    return Interval(mean, sd, sem, n, mean - half, mean + half, "t")


def t_factor(n: int) -> float:
    """The 97.5% quantile of Student's t with n - 1 degrees of freedom (NaN for n < 2)."""
    if n < 2:
        return float("nan")
    from scipy.special import stdtrit

    return float(stdtrit(n - 1, 0.975))
