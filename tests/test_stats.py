"""sweeper.stats against independent scipy computations, literature values and crafted cases."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from scipy import stats as st

from sweeper.errors import UnknownNameError
from sweeper.stats import (
    holm,
    interval,
    paired,
    seeds_needed,
    stratified_avg_interval,
    t_test_power,
)


@pytest.fixture(autouse=True)
def _warnings_are_errors() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# interval


@pytest.mark.parametrize("values", [[1.0, 2.0], [3.1, 2.9, 3.4], [0.5, 0.1, 0.9, 0.7, 0.2, 1.3]])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_t_interval_matches_scipy(values: list[float], level: float) -> None:
    got = interval(values, level)
    n = len(values)
    low, high = st.t.interval(level, n - 1, loc=np.mean(values), scale=st.sem(values))
    assert got.method == "t"
    assert got.n == n
    assert got.low == pytest.approx(low, abs=1e-9)
    assert got.high == pytest.approx(high, abs=1e-9)
    assert got.sd == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    assert got.sem == pytest.approx(st.sem(values), abs=1e-12)


def test_bootstrap_from_ten_values_reproducible_and_covering() -> None:
    x = np.random.default_rng(3).normal(5.0, 2.0, size=40)
    a = interval(x, n_boot=5000, seed=7)
    b = interval(x, n_boot=5000, seed=7)
    c = interval(x, n_boot=5000, seed=8)
    assert a.method == "bootstrap"
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.low < a.mean < a.high
    # The percentile interval of a mean of 40 is close to the normal-theory one.
    half = 1.96 * a.sem
    assert a.low == pytest.approx(a.mean - half, abs=0.15 * half)
    assert a.high == pytest.approx(a.mean + half, abs=0.15 * half)
    # The same computation written independently with scipy.
    ref = st.bootstrap(
        (x,), np.mean, n_resamples=5000, method="percentile", rng=np.random.default_rng(7)
    )
    assert a.low == pytest.approx(ref.confidence_interval.low, abs=1e-9)
    assert a.high == pytest.approx(ref.confidence_interval.high, abs=1e-9)


def test_nine_values_t_ten_bootstrap() -> None:
    assert interval(np.arange(9.0)).method == "t"
    assert interval(np.arange(10.0)).method == "bootstrap"


def test_one_value_has_no_interval() -> None:
    got = interval([2.5])
    assert (got.mean, got.n, got.method) == (2.5, 1, "none")
    assert all(math.isnan(v) for v in (got.sd, got.sem, got.low, got.high))


def test_no_value_is_all_nan() -> None:
    got = interval([])
    assert got.n == 0 and got.method == "none"
    assert all(math.isnan(v) for v in (got.mean, got.sd, got.sem, got.low, got.high))


def test_nan_and_inf_dropped() -> None:
    got = interval([1.0, math.nan, 3.0, math.inf])
    ref = interval([1.0, 3.0])
    assert got == ref and got.n == 2


@pytest.mark.parametrize("n", [2, 5, 12])
def test_all_equal_values_zero_width(n: int) -> None:
    got = interval([0.1] * n)
    assert (got.mean, got.sd, got.sem, got.low, got.high) == (0.1, 0.0, 0.0, 0.1, 0.1)


def test_bad_level() -> None:
    with pytest.raises(ValueError, match="level"):
        interval([1.0, 2.0], 1.0)


# paired


def test_paired_matches_scipy_wilcoxon_and_t() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=8)
    other = base + rng.normal(0.4, 0.5, size=8)
    got = paired(base, other, direction="maximize")
    d = other - base
    assert got.n_pairs == 8
    assert got.mean_diff == pytest.approx(d.mean(), abs=1e-12)
    assert got.p_value == pytest.approx(st.wilcoxon(other, base).pvalue, abs=1e-9)
    low, high = st.t.interval(0.95, 7, loc=d.mean(), scale=st.sem(d))
    assert got.ci_low == pytest.approx(low, abs=1e-9)
    assert got.ci_high == pytest.approx(high, abs=1e-9)
    assert got.ci_method == "t"


def test_paired_bootstrap_resamples_pairs() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=30)
    other = base - 0.3 + rng.normal(0, 0.2, size=30)
    got = paired(base, other, direction="minimize", n_boot=2000, seed=4)
    assert got == paired(base, other, direction="minimize", n_boot=2000, seed=4)
    ref = st.bootstrap(
        (other - base,), np.mean, n_resamples=2000, method="percentile",
        rng=np.random.default_rng(4),
    )  # fmt: skip
    assert got.ci_method == "bootstrap"
    assert got.ci_low == pytest.approx(ref.confidence_interval.low, abs=1e-9)
    assert got.ci_high == pytest.approx(ref.confidence_interval.high, abs=1e-9)
    assert got.ci_low < got.mean_diff < got.ci_high < 0
    assert got.p_value == pytest.approx(st.wilcoxon(other - base).pvalue, abs=1e-9)


def test_paired_with_zero_differences_and_ties() -> None:
    base = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    other = [1.0, 2.5, 3.5, 3.0, 6.0, 7.0]  # one zero, ties in |d|
    got = paired(base, other, direction="minimize")
    ref = st.wilcoxon(other, base, zero_method="wilcox")
    assert got.p_value == pytest.approx(ref.pvalue, abs=1e-9)
    # other better (smaller) in 1 pair, tie in 1, worse in 4: (1 + 0.5) / 6
    assert got.prob_improvement == pytest.approx(1.5 / 6)
    flipped = paired(base, other, direction="maximize")
    assert flipped.prob_improvement == pytest.approx(4.5 / 6)
    assert flipped.p_value == got.p_value


def test_paired_all_zero_differences() -> None:
    got = paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], direction="minimize")
    assert (got.n_pairs, got.mean_diff, got.p_value, got.prob_improvement) == (3, 0.0, 1.0, 0.5)
    assert (got.ci_low, got.ci_high) == (0.0, 0.0)


def test_paired_nan_pairs_dropped_and_empty() -> None:
    got = paired([1.0, math.nan, 3.0, 4.0], [2.0, 5.0, math.nan, 6.0], direction="maximize")
    assert got.n_pairs == 2
    assert got.mean_diff == pytest.approx(1.5)
    assert got.prob_improvement == 1.0
    empty = paired([math.nan], [1.0], direction="maximize")
    assert empty.n_pairs == 0
    assert all(math.isnan(v) for v in (empty.mean_diff, empty.p_value, empty.prob_improvement))


def test_paired_single_pair() -> None:
    got = paired([1.0], [0.5], direction="minimize")
    assert (got.n_pairs, got.mean_diff, got.prob_improvement, got.ci_method) == (
        1,
        -0.5,
        1.0,
        "none",
    )
    assert math.isnan(got.ci_low) and got.p_value == pytest.approx(st.wilcoxon([-0.5]).pvalue)


def test_paired_errors() -> None:
    with pytest.raises(ValueError, match="length"):
        paired([1.0, 2.0], [1.0], direction="minimize")
    with pytest.raises(UnknownNameError, match="unknown direction 'down'"):
        paired([1.0], [1.0], direction="down")


# holm


def test_holm_literature_example() -> None:
    got = holm([0.01, 0.04, 0.03, 0.005])
    assert got == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-12)


def test_holm_nan_kept_not_counted_and_capped() -> None:
    got = holm([math.nan, 0.02, 0.5, 0.01])
    assert math.isnan(got[0])
    # m = 3: 0.01 * 3, max(0.03, 0.02 * 2), max(0.04, 0.5 * 1)
    assert got[1:] == pytest.approx([0.04, 0.5, 0.03])
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == []


def test_holm_monotone_in_p() -> None:
    p = np.random.default_rng(2).uniform(0, 0.2, size=12)
    adj = np.array(holm(list(p)))
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    assert np.all(adj >= p)


# stratified Avg


def test_stratified_small_n_is_a_rescaled_stratified_bootstrap() -> None:
    cells = {"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 7.0, math.nan], "c": [0.0, 1.0]}
    got = stratified_avg_interval(cells, n_boot=4000, seed=2)
    a, b, c = [1.0, 2.0, 3.0], [4.0, 5.0, 7.0], [0.0, 1.0]
    v = [np.var(s, ddof=1) / len(s) for s in (a, b, c)]
    sem = math.sqrt(sum(v)) / 3
    mean = (2.0 + 16 / 3 + 0.5) / 3
    # The reference: scipy's stratified percentile bootstrap of the rescaled values.
    rescaled = [np.mean(s) + math.sqrt(len(s) / (len(s) - 1)) * (np.array(s) - np.mean(s))
                for s in (a, b, c)]

    def avg(*rs: np.ndarray, axis: int) -> np.ndarray:
        return np.mean([np.mean(r, axis=axis) for r in rs], axis=0)

    ref = st.bootstrap(rescaled, avg, n_resamples=4000, batch=1000, vectorized=True,
                       method="percentile", rng=np.random.default_rng(2)).confidence_interval
    assert got.method == "bootstrap" and got.n == 8
    assert got.mean == pytest.approx(mean, abs=1e-12)
    assert got.sem == pytest.approx(sem, abs=1e-12)
    assert got.low == pytest.approx(ref.low, abs=1e-9)
    assert got.high == pytest.approx(ref.high, abs=1e-9)


def test_stratified_rescaling_restores_the_variance_of_three_seeds() -> None:
    # Six domains of three seeds: the plain stratified bootstrap's spread is sqrt(2/3) of the
    # standard error; rescaled, the bootstrap sd of the Avg matches the unbiased sem.
    rng = np.random.default_rng(11)
    cells = {d: rng.normal(d, 1.0, size=3) for d in range(6)}
    got = stratified_avg_interval(cells, n_boot=20_000, seed=0)
    assert got.high - got.low == pytest.approx(2 * 1.96 * got.sem, rel=0.1)


def test_stratified_bootstrap_weighs_domains_equally() -> None:
    rng = np.random.default_rng(5)
    cells = {"a": rng.normal(0.0, 1.0, size=10), "b": rng.normal(10.0, 1.0, size=40)}
    got = stratified_avg_interval(cells, n_boot=3000, seed=1)
    assert got == stratified_avg_interval(cells, n_boot=3000, seed=1)
    assert got.method == "bootstrap"
    assert got.mean == pytest.approx((cells["a"].mean() + cells["b"].mean()) / 2)
    assert got.low < got.mean < got.high
    # Resampling within domains: the spread is that of the stratified mean, not of the pool.
    assert got.high - got.low == pytest.approx(2 * 1.96 * got.sem, rel=0.2)


def test_stratified_missing_domain_and_single_seed() -> None:
    assert math.isnan(stratified_avg_interval({"a": [1.0, 2.0], "b": []}).mean)
    one = stratified_avg_interval({"a": [1.0, 2.0], "b": [3.0]})
    assert (one.mean, one.method) == (2.25, "none") and math.isnan(one.low)
    flat = stratified_avg_interval({"a": [1.0, 1.0], "b": [3.0] * 12})
    assert (flat.mean, flat.low, flat.high) == (2.0, 2.0, 2.0)


# seeds_needed


def test_seeds_needed_power_table() -> None:
    # Cohen (1988) / G*Power: two-sided alpha .05, power .8.
    assert seeds_needed(1.0, 1.0, paired=False) == 17
    assert seeds_needed(2.0, 1.0, paired=True) == 34
    assert seeds_needed(1.0, -0.5, paired=False) == 64
    assert t_test_power(17, 1.0, paired=False) == pytest.approx(0.807, abs=5e-4)
    assert t_test_power(16, 1.0, paired=False) < 0.8


def test_seeds_needed_huge_effect_and_errors() -> None:
    assert seeds_needed(0.01, 10.0) == 2
    with pytest.raises(ValueError, match="sd"):
        seeds_needed(0.0, 1.0)
    with pytest.raises(ValueError, match="delta"):
        seeds_needed(1.0, 0.0)
    with pytest.raises(ValueError, match="more than 100"):
        seeds_needed(1.0, 0.01, max_n=100)


# the hand-written cases equal scipy's own


@pytest.mark.parametrize("n", [1, 2, 5, 13, 14, 30, 50, 51, 80])
@pytest.mark.parametrize("decimals", [0, 1, 6])
def test_wilcoxon_equals_scipy_with_and_without_ties_and_zeros(n: int, decimals: int) -> None:
    from sweeper.stats import _wilcoxon

    rng = np.random.default_rng(n * 10 + decimals)
    for _ in range(3 if n <= 13 else 20):  # scipy's permutation test takes seconds at n = 13
        d = np.round(rng.normal(0.2, 1.0, size=n), decimals)
        want = 1.0 if not np.any(d) else st.wilcoxon(d, zero_method="wilcox").pvalue
        assert _wilcoxon(d) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("sizes", [(10,), (37,), (3, 3, 3), (12, 40)])
def test_bootstrap_equals_scipy_bootstrap(sizes: tuple[int, ...]) -> None:
    from sweeper.stats import _bootstrap_mean

    rng = np.random.default_rng(len(sizes))
    samples = tuple(rng.normal(i, 1.0, size=k) for i, k in enumerate(sizes))

    def avg(*rs: np.ndarray, axis: int) -> np.ndarray:
        return np.mean([np.mean(r, axis=axis) for r in rs], axis=0)

    low, high = _bootstrap_mean(samples, 0.9, 2500, 9)
    ref = st.bootstrap(samples, avg, n_resamples=2500, batch=1000, vectorized=True,
                       confidence_level=0.9, method="percentile",
                       rng=np.random.default_rng(9)).confidence_interval
    assert (low, high) == pytest.approx((ref.low, ref.high), abs=1e-12)
