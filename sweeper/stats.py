"""Seeds as a statistical object: intervals, paired comparisons, Holm's correction, sample sizes.

Everything here takes arrays of metric values (one per seed, or one per pair of seeds) and
returns frozen dataclasses; `sweeper.compare` builds those arrays from trials frames. Holm's
step-down adjustment is written by hand (scipy has none); so are the bootstrap and the common
cases of the Wilcoxon test, following scipy's definitions exactly (tests hold them equal to
`scipy.stats.bootstrap` and `scipy.stats.wilcoxon`), because importing scipy.stats takes half
a second, a quarter of a comparison's budget: the t quantile comes from scipy.special.

Definitions (the references a reader can check):

- `interval`: Student t interval ``mean +- t_{(1+level)/2, n-1} * sd / sqrt(n)`` for
  ``2 <= n < 10``; the percentile bootstrap of the mean (Efron & Tibshirani 1993, ch. 13) for
  ``n >= 10``, `scipy.stats.bootstrap`'s scheme with a generator seeded by `seed`. Below ten seeds
  the bootstrap distribution of the mean takes few distinct values and its percentile interval
  is far too narrow (with three seeds it is about [min, max], which covers the mean only 75% of
  the time), hence the t interval there.
- `paired`: the differences ``other - baseline`` of matched seeds; their interval follows the
  same rule as `interval` (resampling differences is resampling pairs); the p-value is the
  two-sided Wilcoxon signed-rank test (Wilcoxon 1945) of `scipy.stats.wilcoxon` with
  ``zero_method="wilcox"`` (zero differences are dropped) and ``method="auto"`` (scipy 1.17:
  exact null distribution up to 50 pairs without ties or zeros; with ties or zeros an exhaustive
  permutation up to 13 pairs, the normal approximation beyond).
- `stratified_avg_interval`: the percentile bootstrap of a per-domain table's Avg, seeds
  resampled within each domain after the rescaling of Rao & Wu (1988), so that small numbers
  of seeds per domain do not shrink its variance.
- `holm`: Holm (1979), "A simple sequentially rejective multiple test procedure",
  Scand. J. Statist. 6:65-70.
- `seeds_needed`: power of the two-sided t test from the noncentral t distribution
  (Cohen 1988, ch. 2; the numbers G*Power gives).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sweeper.registry import check_name

DIRECTIONS = ("minimize", "maximize")
#: below this many values an interval is Student's t; from it on, the percentile bootstrap.
BOOTSTRAP_MIN_N = 10

Values = Sequence[float] | npt.NDArray[Any]


@dataclass(frozen=True)
class Interval:
    """A confidence interval for a mean over seeds.

    Attributes:
        mean: the mean of the finite values (NaN when there are none).
        sd: their standard deviation (ddof=1); NaN below two values and for a stratified mean.
        sem: the standard error of `mean`; NaN below two values.
        n: how many finite values there were.
        low: the lower end of the interval; NaN unless `method` is ``t`` or ``bootstrap``.
        high: the upper end.
        level: the confidence level, e.g. 0.95.
        method: ``"t"`` (Student t, 2 <= n < 10), ``"bootstrap"`` (percentile bootstrap,
            n >= 10) or ``"none"`` (fewer than two values: no interval).
    """

    mean: float
    sd: float
    sem: float
    n: int
    low: float
    high: float
    level: float
    method: str


@dataclass(frozen=True)
class PairedResult:
    """A paired comparison of two configurations over matched seeds.

    Attributes:
        n_pairs: pairs where both values are finite.
        mean_diff: mean of ``other - baseline``, in the metric's units (NaN without pairs).
        sd_diff: standard deviation of the differences (ddof=1; NaN below two pairs), the ``sd``
            `seeds_needed` takes for a paired design.
        ci_low: lower end of the interval for `mean_diff` (see `interval`; NaN below 2 pairs).
        ci_high: upper end.
        ci_method: ``"t"``, ``"bootstrap"`` or ``"none"``, as in `Interval.method`.
        p_value: two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero,
            NaN without pairs.
        prob_improvement: share of pairs where `other` is better in `direction`, ties counting
            half; NaN without pairs.
        level: the confidence level of the interval.
    """

    n_pairs: int
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    ci_method: str
    p_value: float
    prob_improvement: float
    level: float


def interval(
    values: Values, level: float = 0.95, *, n_boot: int = 10_000, seed: int = 0
) -> Interval:
    """A confidence interval for the mean of `values`; non-finite values are dropped.

    Args:
        values: one metric value per seed.
        level: the confidence level, strictly between 0 and 1.
        n_boot: bootstrap resamples (used from `BOOTSTRAP_MIN_N` values on).
        seed: seeds the bootstrap's generator: the same inputs give the same interval.

    Returns:
        The interval: t for 2 <= n < 10, bootstrap for n >= 10, method ``none`` (sd, sem, low,
        high NaN) for n == 1, everything NaN for n == 0. All-equal values give a zero-width
        interval at that value.

    Raises:
        ValueError: `level` is not in (0, 1) or `n_boot` is below 1.
    """
    _check_level(level, n_boot)
    x = _finite(values)
    n = len(x)
    nan = math.nan
    if n == 0:
        return Interval(nan, nan, nan, 0, nan, nan, level, "none")
    if n == 1:
        return Interval(float(x[0]), nan, nan, 1, nan, nan, level, "none")
    method = "t" if n < BOOTSTRAP_MIN_N else "bootstrap"
    if np.all(x == x[0]):
        # np.mean and np.std of equal floats may be off by an ulp; the exact answer is known.
        v = float(x[0])
        return Interval(v, 0.0, 0.0, n, v, v, level, method)
    mean = float(np.mean(x))
    sd = float(np.std(x, ddof=1))
    sem = sd / math.sqrt(n)
    if method == "t":
        half = _t_quantile((1.0 + level) / 2.0, n - 1) * sem
        return Interval(mean, sd, sem, n, mean - half, mean + half, level, method)
    low, high = _bootstrap_mean((x,), level, n_boot, seed)
    return Interval(mean, sd, sem, n, low, high, level, method)


def paired(
    baseline: Values,
    other: Values,
    *,
    direction: str,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> PairedResult:
    """Compare `other` with `baseline`, value i of one matched with value i of the other.

    Args:
        baseline: the baseline's metric value per pair (e.g. per seed).
        other: the other configuration's value for the same pairs, in the same order.
        direction: ``"minimize"`` or ``"maximize"``: what counts as an improvement.
        level: the confidence level of the interval of the mean difference.
        n_boot: bootstrap resamples (from `BOOTSTRAP_MIN_N` pairs on).
        seed: seeds the bootstrap's generator.

    Returns:
        The comparison over the pairs where both values are finite (the others are dropped).

    Raises:
        ValueError: the arrays differ in length, `level` or `n_boot` is out of range.
        UnknownNameError: `direction` is not ``minimize`` or ``maximize``.
    """
    check_name("direction", direction, DIRECTIONS)
    _check_level(level, n_boot)
    a = np.asarray(baseline, dtype=float).ravel()
    b = np.asarray(other, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"baseline and other differ in length ({len(a)} != {len(b)})")
    keep = np.isfinite(a) & np.isfinite(b)
    d = b[keep] - a[keep]
    n = len(d)
    ci = interval(d, level, n_boot=n_boot, seed=seed)
    if n == 0:
        p = prob = math.nan
    else:
        better = d < 0 if direction == "minimize" else d > 0
        prob = (float(np.count_nonzero(better)) + 0.5 * float(np.count_nonzero(d == 0))) / n
        p = _wilcoxon(d)
    return PairedResult(
        n_pairs=n,
        mean_diff=ci.mean,
        sd_diff=ci.sd,
        ci_low=ci.low,
        ci_high=ci.high,
        ci_method=ci.method,
        p_value=p,
        prob_improvement=prob,
        level=level,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values (Holm 1979).

    With the m non-NaN p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of
    ``p_(i)`` is ``min(1, max_{j <= i} (m - j + 1) * p_(j))``; rejecting where it is at most
    alpha controls the family-wise error rate at alpha. Example:
    ``[0.01, 0.04, 0.03, 0.005] -> [0.03, 0.06, 0.06, 0.02]``.

    Returns:
        The adjusted p-values in the order given; NaN stays NaN and does not count in m.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    known = np.flatnonzero(~np.isnan(p))
    m = len(known)
    order = known[np.argsort(p[known], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * float(p[i]))
        out[i] = min(1.0, running)
    return [float(v) for v in out]


def stratified_avg_interval(
    cells: Mapping[Any, Values],
    level: float = 0.95,
    *,
    n_boot: int = 10_000,
    seed: int = 0,
) -> Interval:
    """An interval for a per-domain table's Avg: the mean over domains of the seed means.

    A stratified percentile bootstrap: each resample draws seeds with replacement within every
    held-out domain separately, so every domain keeps its weight 1 / n_domains. With n_j seeds
    in domain j the plain bootstrap shrinks that domain's variance by (n_j - 1) / n_j (a third
    with the usual three seeds) and undercovers, so each domain's values are first rescaled
    about their mean by ``sqrt(n_j / (n_j - 1))`` (the rescaling bootstrap of stratified
    samples, Rao & Wu 1988, JASA 83:231-241): the bootstrap variance of the Avg is then exactly
    the unbiased ``sem**2`` below, and the interval's width comes from the resampled
    distribution. Non-finite values are dropped.

    Args:
        cells: held-out domain -> the metric's values over seeds in that domain.
        level: the confidence level.
        n_boot: bootstrap resamples.
        seed: seeds the bootstrap's generator.

    Returns:
        ``mean`` is the Avg; ``n`` the number of seed values in all; ``sem`` is
        ``sqrt(sum_j sd_j**2 / n_j) / n_domains`` (the table's ``avg_sem``); ``sd`` is NaN.
        Everything is NaN when a domain has no value (there is no Avg then); with a domain of
        a single value the interval is NaN and `method` ``none``; all-equal values within
        every domain give a zero-width interval. `method` is ``bootstrap`` otherwise.

    Raises:
        ValueError: `level` or `n_boot` is out of range.
    """
    _check_level(level, n_boot)
    samples = tuple(_finite(v) for v in cells.values())
    nan = math.nan
    n = sum(len(s) for s in samples)
    if not samples or any(len(s) == 0 for s in samples):
        return Interval(nan, nan, nan, n, nan, nan, level, "none")
    avg = float(np.mean([np.mean(s) for s in samples]))
    if any(len(s) < 2 for s in samples):
        return Interval(avg, nan, nan, n, nan, nan, level, "none")
    sem = math.sqrt(sum(float(np.var(s, ddof=1)) / len(s) for s in samples)) / len(samples)
    if sem == 0.0:
        return Interval(avg, nan, 0.0, n, avg, avg, level, "bootstrap")
    rescaled = tuple(
        np.mean(s) + math.sqrt(len(s) / (len(s) - 1)) * (s - np.mean(s)) for s in samples
    )
    low, high = _bootstrap_mean(rescaled, level, n_boot, seed)
    return Interval(avg, nan, sem, n, low, high, level, "bootstrap")


def seeds_needed(
    sd: float,
    delta: float,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    paired: bool = True,
    max_n: int = 1_000_000,
) -> int:
    """The fewest seeds per configuration for a two-sided t test to detect `delta`.

    Power is computed exactly from the noncentral t distribution: with effect size
    ``d = |delta| / sd``, a paired design (one-sample t test on the differences) has
    ``df = n - 1`` and noncentrality ``d * sqrt(n)``; an unpaired one (two-sample t test, n
    per group, equal variances) has ``df = 2n - 2`` and noncentrality ``d * sqrt(n / 2)``.
    Examples: unpaired d = 1.0 -> 17 per group; paired d = 0.5 -> 34 pairs.

    Args:
        sd: for a paired design the sd of the differences (`PairedResult.sd_diff`); unpaired,
            the sd within a configuration (`sweeper.compare.observed_sd`).
        delta: the smallest difference worth detecting, in the metric's units.
        power: the wanted probability of detecting it.
        alpha: the test's two-sided significance level.
        paired: seeds matched between the two configurations (True) or independent.
        max_n: give up beyond this many seeds.

    Returns:
        The smallest n >= 2 with power at least `power`.

    Raises:
        ValueError: `sd` or `delta` is not finite and positive (delta may be negative), power or
            alpha not in (0, 1), or more than `max_n` seeds would be needed.
    """
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"sd must be finite and > 0 (got {sd})")
    if not (math.isfinite(delta) and delta != 0):
        raise ValueError(f"delta must be finite and non-zero (got {delta})")
    for name, v in (("power", power), ("alpha", alpha)):
        if not 0 < v < 1:
            raise ValueError(f"{name} must be between 0 and 1 (got {v})")
    effect = abs(delta) / sd
    if _power(max_n, effect, alpha, paired) < power:
        raise ValueError(
            f"more than {max_n} seeds needed for delta {delta} with sd {sd} at power {power}"
        )
    # Power rises with n: bisect between a failing and a passing n.
    low, high = 1, 2
    while _power(high, effect, alpha, paired) < power:
        low, high = high, min(2 * high, max_n)
    while high - low > 1:
        mid = (low + high) // 2
        if _power(mid, effect, alpha, paired) >= power:
            high = mid
        else:
            low = mid
    return high


def t_test_power(n: int, effect: float, *, alpha: float = 0.05, paired: bool = True) -> float:
    """Power of the two-sided t test with n seeds per configuration and effect |delta| / sd."""
    return _power(n, abs(effect), alpha, paired)


def _power(n: int, effect: float, alpha: float, paired: bool) -> float:
    from scipy import stats

    if n < 2:
        return 0.0
    df = n - 1 if paired else 2 * n - 2
    ncp = effect * math.sqrt(n if paired else n / 2)
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def _t_quantile(p: float, df: float) -> float:
    """Student t's quantile: ``scipy.stats.t.ppf(p, df)`` is ``scipy.special.stdtrit(df, p)``,
    and scipy.special imports in a tenth of the time scipy.stats takes (0.1 s against 0.5 s)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


#: above this many differences (zeros included) scipy's method="auto" uses the normal
#: approximation; at most this many without ties or zeros, the exact null distribution.
_WILCOXON_EXACT_MAX_N = 50
#: with ties or zeros, up to this many differences scipy enumerates every sign pattern.
_WILCOXON_PERMUTATION_MAX_N = 13


def _wilcoxon(d: npt.NDArray[np.float64]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of differences; 1.0 when all are zero.

    The p-value of ``scipy.stats.wilcoxon(d, zero_method="wilcox", method="auto")``
    (correction off, its default). Its two common cases are computed here from their
    definitions, so that a comparison does not pay scipy.stats' import: the exact null
    distribution (up to 50 differences, no ties or zeros) and the normal approximation with
    the tie correction (more than 50). Ties or zeros among at most 50 differences need scipy's
    permutation test; up to 13 pairs that is exhaustive, beyond it the normal approximation.
    Tests hold all cases equal to scipy to 1e-12.
    """
    if not np.any(d != 0):
        # zero_method="wilcox" drops every pair: no evidence of a difference.
        return 1.0
    n_all = len(d)
    nz = d[d != 0]
    ranks, tie_sizes = _average_ranks(np.abs(nz))
    r_plus = float(np.sum(ranks[nz > 0]))
    has_ties = bool(np.any(tie_sizes > 1))
    n = len(nz)
    if n_all <= _WILCOXON_EXACT_MAX_N and (has_ties or n < n_all):
        if n_all <= _WILCOXON_PERMUTATION_MAX_N:
            return _sign_flip_p(ranks, r_plus)
    elif n_all <= _WILCOXON_EXACT_MAX_N:
        counts = _signed_rank_counts(n)
        total = float(2**n)
        k = int(r_plus)  # an integer without ties
        cdf = float(counts[: k + 1].sum()) / total
        sf = float(counts[k:].sum()) / total
        return min(1.0, 2.0 * min(cdf, sf))
    mean = n * (n + 1) / 4.0
    var = (n * (n + 1) * (2 * n + 1) - float(np.sum(tie_sizes**3 - tie_sizes)) / 2.0) / 24.0
    z = (r_plus - mean) / math.sqrt(var)
    # 2 * Phi(-|z|), the two-sided normal tail
    return min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))


def _sign_flip_p(ranks: npt.NDArray[np.float64], r_plus: float) -> float:
    """Two-sided p-value of the positive-rank sum `r_plus` against all 2**n sign patterns of
    `ranks`, as ``scipy.stats.permutation_test`` computes it (ties within 100 eps count)."""
    n = len(ranks)
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    null = bits @ ranks
    gamma = abs(100 * np.finfo(np.float64).eps * r_plus)
    less = float(np.mean(null <= r_plus + gamma))
    greater = float(np.mean(null >= r_plus - gamma))
    return min(1.0, 2.0 * min(less, greater))


def _average_ranks(
    a: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """1-based ranks of `a`, ties sharing their average rank; and the size of each tie group."""
    order = np.argsort(a, kind="stable")
    sorted_a = a[order]
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    sizes = np.diff(np.r_[starts, len(a)])
    group_rank = starts + (sizes + 1) / 2.0
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, sizes)
    return ranks, sizes.astype(np.int64)


def _signed_rank_counts(n: int) -> npt.NDArray[np.int64]:
    """How many of the 2**n sign patterns of ranks 1..n give each positive-rank sum 0..n(n+1)/2
    (the subset-sum counts; below 2**53 for n <= 50, so exact in int64)."""
    counts = np.zeros(n * (n + 1) // 2 + 1, dtype=np.int64)
    counts[0] = 1
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts


def _bootstrap_mean(
    samples: tuple[npt.NDArray[np.float64], ...], level: float, n_boot: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-sample means, each sample resampled
    on its own (one sample: the plain bootstrap of the mean; several: stratified).

    The scheme of ``scipy.stats.bootstrap(..., method="percentile")``: `n_boot` resamples drawn
    with ``rng.integers`` from ``default_rng(seed)``, 1000 at a time (bounding memory at
    1000 x n values), then the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles with
    linear interpolation. Written with numpy because importing scipy.stats costs half a
    second, a quarter of a comparison's budget.
    """
    rng = np.random.default_rng(seed)
    stats_b = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, 1000):
        b = min(1000, n_boot - start)
        means = [s[rng.integers(0, len(s), size=(b, len(s)))].mean(axis=1) for s in samples]
        stats_b[start : start + b] = np.mean(means, axis=0)
    alpha = (1.0 - level) / 2.0
    low, high = np.percentile(stats_b, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def _finite(values: Values) -> npt.NDArray[np.float64]:
    x = np.asarray(values, dtype=np.float64).ravel()
    return np.asarray(x[np.isfinite(x)], dtype=np.float64)


def _check_level(level: float, n_boot: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (got {level})")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1 (got {n_boot})")
