"""Configurations ranked by their seed mean."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweeper.registry import check_name
from sweeper.report.cells import DIRECTIONS, code, completed


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
    trials = completed(df, axes, metric)
    if not len(trials):
        return pd.DataFrame({c: pd.Series(dtype=float if c != "n" else int) for c in columns})

    keys = [code(a) for a in axis_names] or [trials["state"].rename("_all")]
    stats = trials.groupby(keys, sort=True)[metric].agg(["mean", "std", "count"]).reset_index()
    stats = stats.sort_values(
        ["mean", "count"],
        ascending=[direction == "minimize", False],
        kind="stable",  # groupby sorted by axis codes, so ties stay in axis order
    )
    out = pd.DataFrame(
        {a: [axes[a][int(k)] for k in stats[code(a)]] for a in axis_names},
        index=range(len(stats)),
    )
    n = stats["count"].to_numpy(dtype=int)
    std = stats["std"].to_numpy(dtype=float)
    out["mean"] = stats["mean"].to_numpy(dtype=float)
    out["sem"] = np.where(n > 1, std / np.sqrt(n), np.nan)
    out["std"] = std
    out["n"] = n
    return out if top is None else out.head(top)


def observed_axes(df: pd.DataFrame, names: Sequence[str]) -> dict[str, list[Any]]:
    """Axes from the values trials actually hold, in order of first appearance: what a
    searched study's configurations are ranked over."""
    done = df[df["state"] == "completed"] if "state" in df.columns else df
    return {n: list(dict.fromkeys(done[n].tolist())) if n in done.columns else [] for n in names}
