"""Comparisons and model selection on trials frames, seed against seed.

The functions here take the trials DataFrame the store produces (one row per trial: parameter
columns, ``seed``, ``state``, metric columns) and return frozen dataclasses or frames; the
statistics themselves are `sweeper.stats`.

Only trials in state ``completed`` with a finite value of the metric count. Values are matched
as `sweeper.report` matches them: exactly, except that numbers (ints and floats alike) within a
relative tolerance of 1e-9 are the same value (``0`` and ``0.0``, ``0.05`` and
``0.05000000001``). Where several trials share a pairing key (an axis was left out of
``params``), their values are averaged into one before pairing, as the grid tables pool them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from sweeper.errors import UnknownNameError
from sweeper.registry import check_name
from sweeper.stats import DIRECTIONS, holm, paired

#: numbers this close (relative) are one value of an axis.
REL_TOL = 1e-9
SELECTIONS = ("oracle", "source")


class UnknownValueError(UnknownNameError):
    """A value asked for (e.g. a comparison's baseline) is not among an axis's values.

    Attributes:
        axis: the axis.
        value: the value asked for.
        values: the values the trials hold, in order of first appearance.
    """

    def __init__(self, axis: str, value: Any, values: Sequence[Any]) -> None:
        self.axis, self.value, self.values = axis, value, list(values)
        choices = ", ".join(repr(v) for v in values) or "(none)"
        super().__init__(
            f"{axis} = {value!r} is not a value of the trials; choose one of: {choices}"
        )


@dataclass(frozen=True)
class Comparison:
    """One value of an axis against the baseline value, over paired seeds.

    Attributes:
        axis: the axis compared along, e.g. ``sam_rho``.
        baseline: the baseline value as the trials hold it (``0.0`` when asked for ``0``).
        value: the value compared with it.
        within: the values of the `within` axes this comparison is for; empty without.
        metric: the metric compared.
        n_pairs: pairs with a value on both sides.
        n_unpaired: pairing keys (seed and other parameters) with a value on one side only;
            those trials are left out.
        mean_diff: mean of ``value - baseline`` over the pairs, in the metric's units.
        sd_diff: sd of the differences (ddof=1), for `sweeper.stats.seeds_needed`.
        ci_low: lower end of the interval of `mean_diff` (`sweeper.stats.interval` rules).
        ci_high: upper end.
        ci_method: ``t``, ``bootstrap`` or ``none``.
        p_value: two-sided Wilcoxon signed-rank p-value (`sweeper.stats.paired`).
        p_holm: `p_value` adjusted by Holm over the values compared in this `within` group.
        prob_improvement: share of pairs where `value` beats the baseline (ties half).
    """

    axis: str
    baseline: Any
    value: Any
    within: dict[str, Any]
    metric: str
    n_pairs: int
    n_unpaired: int
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    ci_method: str
    p_value: float
    p_holm: float
    prob_improvement: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: axis, baseline, value, metric, n_pairs, mean_diff, ci_low, ci_high,
        p_value, p_holm, prob_improvement, and ``within`` when there are within axes."""
        out: dict[str, Any] = {"axis": self.axis, "baseline": self.baseline, "value": self.value}
        if self.within:
            out["within"] = dict(self.within)
        out.update(
            metric=self.metric,
            n_pairs=self.n_pairs,
            mean_diff=self.mean_diff,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            p_value=self.p_value,
            p_holm=self.p_holm,
            prob_improvement=self.prob_improvement,
        )
        return out


@dataclass(frozen=True)
class ConfigComparison:
    """Configuration b against configuration a over paired seeds (`compare_configs`).

    Attributes are those of `Comparison` without axis, values and Holm: ``mean_diff`` is
    ``b - a``; ``pair_on`` the columns the pairs agree on.
    """

    metric: str
    pair_on: tuple[str, ...]
    n_pairs: int
    n_unpaired: int
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    ci_method: str
    p_value: float
    prob_improvement: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every attribute, ``pair_on`` as a list."""
        return {
            "metric": self.metric,
            "pair_on": list(self.pair_on),
            "n_pairs": self.n_pairs,
            "n_unpaired": self.n_unpaired,
            "mean_diff": self.mean_diff,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "prob_improvement": self.prob_improvement,
        }


def compare_by(
    frame: pd.DataFrame,
    *,
    axis: str,
    baseline: Any,
    params: Sequence[str],
    metric: str,
    direction: str,
    within: Sequence[str] = (),
    pair_on: Sequence[str] = (),
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> list[Comparison]:
    """Compare every value of `axis` with `baseline`, pairing trials seed by seed.

    A trial of value v is paired with the baseline trial that agrees with it on every other
    column of `params`, on ``seed`` and on every column of `pair_on`. Each value's pairs give a
    `sweeper.stats.paired` comparison; Holm's adjustment runs over the values compared within
    each combination of the `within` axes separately.

    Args:
        frame: the trials, as the store returns them.
        axis: the axis compared along.
        baseline: the value of `axis` the others are compared with (numbers match within 1e-9).
        params: the columns that make a configuration (the axis may be among them).
        metric: the metric column.
        direction: ``"minimize"`` or ``"maximize"``.
        within: axes to compare within, one family of tests per combination of their values.
        pair_on: further columns the pairs must agree on (e.g. the held-out domain when it is
            not in `params`).
        level, n_boot, seed: the interval's confidence level, bootstrap resamples and seed.

    Returns:
        For each combination of the `within` values (in order of first appearance), one row per
        other value of `axis` (in order of first appearance in the frame, every state counted),
        also where it has no pairs (then the statistics are NaN).

    Raises:
        UnknownNameError: `direction`, or a column named in the arguments, is not in the frame.
        UnknownValueError: `baseline` is not a value the trials hold for `axis`.
    """
    check_name("direction", direction, DIRECTIONS)
    key_cols = _unique([*(p for p in params if p != axis), *within, "seed", *pair_on])
    key_cols = [c for c in key_cols if c != axis]
    _check_columns(frame, [axis, metric, *key_cols])
    axis_codes, axis_values = _codes([*frame[axis].tolist(), baseline])
    base_code = int(axis_codes[-1])
    if not (axis_codes[:-1] == base_code).any():
        raise UnknownValueError(axis, baseline, axis_values[:-1])
    codes = pd.DataFrame({"__axis": axis_codes[:-1]}, index=frame.index)
    for c in key_cols:
        codes[c] = _codes(frame[c].tolist())[0]
    within_reps = {w: _codes(frame[w].tolist())[1] for w in within}

    done = _usable(frame, metric)
    table = codes[done].assign(__y=frame.loc[done, metric].to_numpy(dtype=float))
    others = [k for k in range(len(axis_values)) if k != base_code]
    groups = list(dict.fromkeys(map(tuple, codes[list(within)].to_numpy().tolist())))
    out: list[Comparison] = []
    for group in groups:
        part = table
        for w, k in zip(within, group, strict=True):
            part = part[part[w] == k]
        means = part.groupby(["__axis", *key_cols], sort=False)["__y"].mean().reset_index()
        base = means[means["__axis"] == base_code].drop(columns="__axis")
        rows = []
        for k in others:
            side = means[means["__axis"] == k].drop(columns="__axis")
            a, b, n_unpaired = _pair(base, side, key_cols)
            rows.append(
                (
                    k,
                    n_unpaired,
                    paired(a, b, direction=direction, level=level, n_boot=n_boot, seed=seed),
                )
            )
        adjusted = holm([r.p_value for _, _, r in rows])
        for (k, n_unpaired, r), p_holm in zip(rows, adjusted, strict=True):
            out.append(
                Comparison(
                    axis=axis,
                    baseline=axis_values[base_code],
                    value=axis_values[k],
                    within={w: within_reps[w][int(g)] for w, g in zip(within, group, strict=True)},
                    metric=metric,
                    n_pairs=r.n_pairs,
                    n_unpaired=n_unpaired,
                    mean_diff=r.mean_diff,
                    sd_diff=r.sd_diff,
                    ci_low=r.ci_low,
                    ci_high=r.ci_high,
                    ci_method=r.ci_method,
                    p_value=r.p_value,
                    p_holm=p_holm,
                    prob_improvement=r.prob_improvement,
                )
            )
    return out


def compare_configs(
    frame_a: pd.DataFrame,
    frame_b: pd.DataFrame,
    *,
    metric: str,
    direction: str,
    pair_on: Sequence[str] = ("seed",),
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> ConfigComparison:
    """Compare configuration b with configuration a (possibly from two studies), seed by seed.

    Args:
        frame_a: the trials of the baseline configuration.
        frame_b: the trials of the other configuration.
        metric: the metric column, in both frames.
        direction: ``"minimize"`` or ``"maximize"``.
        pair_on: the columns a pair agrees on; trials of a frame sharing them are averaged.
        level, n_boot, seed: the interval's confidence level, bootstrap resamples and seed.

    Returns:
        The paired comparison of b against a (``mean_diff`` is b - a).

    Raises:
        UnknownNameError: `direction`, the metric or a `pair_on` column is missing.
    """
    check_name("direction", direction, DIRECTIONS)
    cols = list(pair_on)
    for f in (frame_a, frame_b):
        _check_columns(f, [metric, *cols])
    sides = []
    n_a = len(frame_a)
    for start, f in ((0, frame_a), (n_a, frame_b)):
        done = _usable(f, metric)
        side = pd.DataFrame({"__y": f[metric].to_numpy(dtype=float)})
        for c in cols:
            # Codes over both frames together, so that 0.1 in one matches 0.1 in the other.
            both = _codes([*frame_a[c].tolist(), *frame_b[c].tolist()])[0]
            side[c] = both[start : start + len(f)]
        sides.append(side[done.to_numpy()].groupby(cols, sort=False)["__y"].mean().reset_index())
    a, b, n_unpaired = _pair(sides[0], sides[1], cols)
    r = paired(a, b, direction=direction, level=level, n_boot=n_boot, seed=seed)
    return ConfigComparison(
        metric=metric,
        pair_on=tuple(cols),
        n_pairs=r.n_pairs,
        n_unpaired=n_unpaired,
        mean_diff=r.mean_diff,
        sd_diff=r.sd_diff,
        ci_low=r.ci_low,
        ci_high=r.ci_high,
        ci_method=r.ci_method,
        p_value=r.p_value,
        prob_improvement=r.prob_improvement,
    )


def select(
    frame: pd.DataFrame,
    *,
    method_axis: str,
    target_axis: str,
    hparams: Sequence[str],
    metric: str,
    direction: str,
    by: str,
    source_metric: str = "source_f1",
    source_direction: str | None = None,
) -> pd.DataFrame:
    """Model selection for leave-one-domain-out studies (Gulrajani & Lopez-Paz 2021, DomainBed).

    For each method and held-out target, the hyperparameter configuration (the values of
    `hparams`) with the best seed-mean of the selection metric is chosen, and all its completed
    seeds are kept, so that the per-domain table and its intervals are computed over them.
    ``by="source"`` selects on `source_metric` (validation on the training domains: the honest
    choice); ``by="oracle"`` on the test-domain `metric` itself, an upper bound that looks at
    the test data. Unlike DomainBed, which selects per trial seed among random hyperparameters,
    the choice here is one per (method, target), by the mean over seeds.

    Args:
        frame: the trials, as the store returns them.
        method_axis: the axis of the methods (e.g. ``method``).
        target_axis: the held-out-domain axis (e.g. ``target``).
        hparams: the axes chosen over; empty keeps every trial.
        metric: the test-domain metric.
        direction: ``"minimize"`` or ``"maximize"``, for `metric`.
        by: ``"oracle"`` or ``"source"``.
        source_metric: the selection metric for ``by="source"``.
        source_direction: its direction; None: the same as `direction`.

    Returns:
        The completed trials of the chosen configurations, with the frame's columns, in the
        frame's order. Ties in the selection mean go to more seeds, then the first configuration.
        A (method, target) with no finite selection value has no trials in the result.

    Raises:
        UnknownNameError: `by`, a direction or a column is not known.
    """
    check_name("selection", by, SELECTIONS)
    check_name("direction", direction, DIRECTIONS)
    chosen_metric = source_metric if by == "source" else metric
    chosen_dir = direction if by == "oracle" or source_direction is None else source_direction
    check_name("direction", chosen_dir, DIRECTIONS)
    groups = [method_axis, target_axis]
    _check_columns(frame, [*groups, *hparams, chosen_metric, metric])
    codes = pd.DataFrame({c: _codes(frame[c].tolist())[0] for c in [*groups, *hparams]})
    completed = (
        (frame["state"] == "completed").to_numpy()
        if "state" in frame.columns
        else np.ones(len(frame), dtype=bool)
    )
    y = frame[chosen_metric].to_numpy(dtype=float)
    usable = completed & np.isfinite(y)
    keys = [*groups, *hparams] if hparams else groups
    stats = (
        codes[usable]
        .assign(__y=y[usable], __order=np.flatnonzero(usable))
        .groupby(keys, sort=False)
        .agg(mean=("__y", "mean"), n=("__y", "size"), first=("__order", "min"))
        .reset_index()
    )
    sign = 1.0 if chosen_dir == "minimize" else -1.0
    stats = stats.assign(__rank=sign * stats["mean"], __n=-stats["n"])
    best = stats.sort_values(["__rank", "__n", "first"], kind="stable").drop_duplicates(groups)
    winners = set(map(tuple, best[keys].to_numpy().tolist()))
    keep = completed & np.array(
        [tuple(row) in winners for row in codes[keys].to_numpy().tolist()], dtype=bool
    )
    return frame[keep]


def observed_sd(frame: pd.DataFrame, params: Sequence[str], metric: str) -> float:
    """The pooled within-configuration sd of the metric over seeds.

    ``sqrt(sum_c (n_c - 1) * s_c**2 / sum_c (n_c - 1))`` over the configurations (the values
    of `params`) with at least two completed trials, ``s_c`` their sd (ddof=1): the per-group
    sd `sweeper.stats.seeds_needed` takes for an unpaired design.

    Returns:
        The pooled sd; NaN when no configuration has two values.

    Raises:
        UnknownNameError: the metric or a parameter is not a column.
    """
    _check_columns(frame, [*params, metric])
    done = _usable(frame, metric)
    y = frame.loc[done, metric].to_numpy(dtype=float)
    if not params:
        groups = pd.DataFrame({"__all": np.zeros(len(y), dtype=int)})
    else:
        groups = pd.DataFrame({p: _codes(frame[p].tolist())[0][done.to_numpy()] for p in params})
    agg = groups.assign(__y=y).groupby(list(groups.columns))["__y"].agg(["var", "size"])
    agg = agg[agg["size"] >= 2]
    dof = float((agg["size"] - 1).sum())
    if dof == 0:
        return math.nan
    return math.sqrt(float(((agg["size"] - 1) * agg["var"]).sum()) / dof)


def _pair(
    base: pd.DataFrame, side: pd.DataFrame, keys: list[str]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """Baseline and other values of the keys both sides hold, and how many keys only one does."""
    merged = base.merge(
        side, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True, sort=False
    )
    both = merged[merged["_merge"] == "both"]
    return (
        both["__y_a"].to_numpy(dtype=float),
        both["__y_b"].to_numpy(dtype=float),
        int((merged["_merge"] != "both").sum()),
    )


def _usable(frame: pd.DataFrame, metric: str) -> pd.Series:
    """Completed trials with a finite metric value (every trial when there is no state)."""
    y = pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=float)
    mask = np.isfinite(y)
    if "state" in frame.columns:
        mask &= (frame["state"] == "completed").to_numpy()
    return pd.Series(mask, index=frame.index)


def _check_columns(frame: pd.DataFrame, names: Sequence[str]) -> None:
    columns = [str(c) for c in frame.columns]
    for name in names:
        check_name("column", name, columns)


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _codes(items: list[Any]) -> tuple[npt.NDArray[np.int64], list[Any]]:
    """A code per item, equal for equal values (numbers within `REL_TOL`), and the value each
    code stands for (its first appearance, as a plain Python value)."""
    labels = [_label(v) for v in items]
    numbers = sorted({lab[1] for lab in labels if lab[0] == "num"})
    canonical: dict[float, float] = {}
    start = math.nan
    for v in numbers:
        # Sorted, so a run of values each close to the run's first is one value.
        if not math.isclose(v, start, rel_tol=REL_TOL):
            start = v
        canonical[v] = start
    index: dict[tuple[Any, ...], int] = {}
    values: list[Any] = []
    codes = np.empty(len(items), dtype=np.int64)
    for i, (lab, item) in enumerate(zip(labels, items, strict=True)):
        if lab[0] == "num":
            lab = ("num", canonical[lab[1]])
        code = index.get(lab)
        if code is None:
            code = index[lab] = len(values)
            values.append(item.item() if isinstance(item, np.generic) else item)
        codes[i] = code
    return codes, values


def _label(value: Any) -> tuple[Any, ...]:
    """A hashable, type-tagged stand-in for a value: True is not 1, "1" is not 1, NaN is NaN."""
    if isinstance(value, bool | np.bool_):
        return ("bool", bool(value))
    if isinstance(value, int | float | np.integer | np.floating):
        v = float(value)
        return ("nan",) if math.isnan(v) else ("num", v)
    if value is None or value is pd.NA:
        return ("none",)
    try:
        hash(value)
    except TypeError:
        return ("repr", repr(value))
    return (type(value).__name__, value)
