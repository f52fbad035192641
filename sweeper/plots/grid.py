"""The grid heatmaps: one panel per grid table, rows x columns, one shared colour scale."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeper.report import GridTable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: the attribute of a figure holding the numbers it draws (see `figure_data`).
_DATA = "sweeper_data"


def figure_data(fig: Figure) -> dict[str, Any]:
    """The numbers a figure made here draws (e.g. ``"values"``: one array per heatmap panel),
    so that tests and callers can check the pixels against the tables."""
    data: dict[str, Any] = getattr(fig, _DATA, {})
    return data


def attach_data(fig: Figure, **data: Any) -> None:
    """Record the numbers `fig` draws, for `figure_data`."""
    setattr(fig, _DATA, {**figure_data(fig), **data})


def table_array(table: GridTable) -> np.ndarray:
    """A grid table's values as a float array, NaN where a cell has no value."""
    return np.array(
        [[math.nan if v is None else float(v) for v in row] for row in table.values], dtype=float
    )


def group_title(group: dict[str, Any]) -> str:
    """``optimizer=adam, sam_rho=0.02``; ``all`` for a table without groups."""
    from sweeper.plots.configs import label as format_axis_value

    return ", ".join(f"{k}={format_axis_value(v)}" for k, v in group.items()) or "all"


def heatmap(
    tables: Sequence[GridTable], *, title: str | None = None, direction: str = "minimize"
) -> Figure:
    """Grid tables as heatmaps: one panel per table (row axis down, column axis across, each
    tick labelled with its value), cells annotated with their values, the best cell outlined,
    one colour scale shared by every panel (logarithmic when the values are positive and span
    a decade or more) with one colorbar; better values are brighter.

    The arrays drawn are in ``figure_data(fig)["values"]`` (NaN for empty cells), in table order.

    Raises:
        ValueError: `tables` is empty.
    """
    if not tables:
        raise ValueError("no grid tables to draw")
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from sweeper.plots.configs import label as format_axis_value

    arrays = [table_array(t) for t in tables]
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays] + [np.empty(0)])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    norm: Normalize = Normalize(lo, hi if hi > lo else lo + 1)
    if finite.size and lo > 0 and hi / lo >= 10:
        norm = LogNorm(lo, hi)
    cmap = "viridis_r" if direction == "minimize" else "viridis"

    n = len(tables)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    first = tables[0]
    cell_w, cell_h = 0.62 * len(first.cols) + 1.3, 0.36 * len(first.rows) + 1.0
    fig = Figure(figsize=(cell_w * ncols + 1.2, cell_h * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for k, (table, values) in enumerate(zip(tables, arrays, strict=True)):
        ax = axes[k // ncols][k % ncols]
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
        ax.set_xticks(range(len(table.cols)), [format_axis_value(c) for c in table.cols])
        ax.set_yticks(range(len(table.rows)), [format_axis_value(r) for r in table.rows])
        ax.tick_params(labelsize=8)
        ax.set_xlabel(table.col_axis or "", fontsize=9)
        ax.set_ylabel(table.row_axis, fontsize=9)
        ax.set_title(group_title(table.group), fontsize=9)
        for (i, j), v in np.ndenumerate(values):
            if math.isfinite(v):
                shade = float(norm(v))
                dark = shade > 0.6 if direction == "minimize" else shade < 0.4
                ax.text(
                    j,
                    i,
                    f"{v:.3g}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
            else:
                ax.text(j, i, "–", ha="center", va="center", fontsize=7, color="grey")
        if table.best is not None:
            i, j = table.best
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2.5))
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
        bar.set_label(f"{first.metric} ({first.agg})")
    fig.suptitle(
        title or f"{first.metric}, {first.agg} over seeds (best cell outlined)", fontsize=10
    )
    attach_data(fig, values=arrays, groups=[dict(t.group) for t in tables])
    return fig
