"""A searched study's parameters made into table axes by binning them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sweeper.report.cells import axis_label


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
    out = df.copy()
    axes: dict[str, list[str]] = {}
    for name, dist in search.items():
        if dist["type"] == "categorical":
            labels = [axis_label(c) for c in dist["choices"]]
            if name in out.columns:
                out[name] = [axis_label(v) for v in out[name]]
            axes[name] = labels
            continue
        floor = dist.get("floor")
        low, high = float(floor if floor is not None else dist["low"]), float(dist["high"])
        if dist["log"]:
            edges = np.logspace(math.log10(low), math.log10(high), bins + 1)
        else:
            edges = np.linspace(low, high, bins + 1)
        labels = [
            f"{axis_label(float(f'{a:.3g}'))}..{axis_label(float(f'{b:.3g}'))}"
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
