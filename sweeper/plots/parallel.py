"""Parallel coordinates over a study's parameters, one line per configuration."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeper.plots.configs import Config, Scale, scale_of
from sweeper.plots.grid import attach_data

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def keep_top(configs: Sequence[Config], top: float | None) -> list[Config]:
    """The best `top` fraction of `configs` (already ordered best first); at least one.

    Raises:
        ValueError: `top` is not in (0, 1].
    """
    if top is None:
        return list(configs)
    if not 0 < top <= 1:
        raise ValueError(f"top must be a fraction in (0, 1] (got {top})")
    return list(configs[: max(1, math.ceil(top * len(configs)))])


def axis_positions(
    values: Sequence[Any], scale: Scale
) -> tuple[np.ndarray, list[float], list[str]]:
    """Where each value sits on a [0, 1] axis, plus the axis' tick positions and labels.

    Categorical: evenly spaced in first-seen order. Log: log10 of the value, zeros one step
    below the smallest positive value (so ``weight_decay = 0`` has its own place). Linear: as is.
    """
    from sweeper.plots.configs import label as format_axis_value

    distinct = list(dict.fromkeys(values))
    if scale == "categorical":
        index = {repr(v): k for k, v in enumerate(distinct)}
        steps = max(len(distinct) - 1, 1)
        pos = np.array([index[repr(v)] / steps for v in values], dtype=float)
        ticks = [k / steps for k in range(len(distinct))]
        return pos, ticks, [format_axis_value(v) for v in distinct]
    numbers = np.array([float(v) for v in values])
    if scale == "log":
        positive = numbers[numbers > 0]
        low_pos = float(positive.min()) if positive.size else 1.0
        raw = np.where(
            numbers > 0, np.log10(np.where(numbers > 0, numbers, 1)), math.log10(low_pos) - 1
        )
    else:
        raw = numbers
    lo, hi = float(raw.min()), float(raw.max())
    span: float = hi - lo if hi > lo else 1.0
    pos = (raw - lo) / span
    if len(distinct) <= 8:
        tick_values = sorted({float(v) for v in distinct})
    elif scale == "log":
        tick_values = [10.0**e for e in range(math.ceil(lo), math.floor(hi) + 1)]
        tick_values = ([0.0] if (numbers == 0).any() else []) + tick_values
    else:
        tick_values = list(np.linspace(lo, hi, 5))
    ticks = []
    for v in tick_values:
        r = (math.log10(v) if v > 0 else lo) if scale == "log" else v
        ticks.append((r - lo) / span)
    labels = [format_axis_value(float(f"{v:.3g}")) for v in tick_values]
    return pos, ticks, labels


def parallel(
    configs: Sequence[Config],
    *,
    metric: str,
    direction: str,
    scales: Mapping[str, Scale] | None = None,
    top: float | None = None,
    title: str | None = None,
) -> Figure:
    """Parallel coordinates: one vertical axis per parameter and a last one for the metric's
    seed mean, one line per configuration coloured by that mean (better is brighter), each
    axis labelled with real values (log axes for log ranges, categories evenly spaced).

    Args:
        configs: the configurations, best first (`configurations`).
        metric, direction: the study metric and its direction.
        scales: each parameter's scale; default `scale_of` its values.
        top: keep only the best fraction of configurations (e.g. 0.25).

    The positions drawn are in ``figure_data(fig)["positions"]`` (configs x axes, in [0, 1])
    and the seed means in ``figure_data(fig)["means"]``.

    Raises:
        ValueError: no configuration, or `top` is not in (0, 1].
    """
    shown = keep_top(configs, top)
    if not shown:
        raise ValueError("no configurations to draw")
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    names = list(shown[0].params)
    means = np.array([c.mean for c in shown])
    columns = []
    for name in names:
        values = [c.params[name] for c in shown]
        scale = (scales or {}).get(name) or scale_of(values)
        columns.append((name, *axis_positions(values, scale)))
    columns.append((f"{metric}\n(seed mean)", *axis_positions(list(means), "linear")))
    positions = np.column_stack([col[1] for col in columns])

    fig = Figure(figsize=(max(7.0, 1.9 * len(columns) + 1.5), 5.0), layout="constrained")
    ax = fig.subplots()
    norm = Normalize(
        float(means.min()),
        float(means.max()) if means.max() > means.min() else float(means.min()) + 1,
    )
    cmap = colormaps["viridis_r" if direction == "minimize" else "viridis"]
    # Worst first, so that the best lines are drawn on top.
    for row in reversed(range(len(shown))):
        ax.plot(
            range(len(columns)), positions[row], color=cmap(norm(means[row])), lw=1.1, alpha=0.75
        )
    for k, (_, _, ticks, labels) in enumerate(columns):
        ax.axvline(k, color="black", lw=0.8)
        for t, label in zip(ticks, labels, strict=True):
            ax.text(
                k + 0.04,
                t,
                label,
                fontsize=7,
                va="center",
                ha="left",
                bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 0.5},
            )
    ax.set_xticks(range(len(columns)), [c[0] for c in columns], fontsize=9)
    ax.set_xlim(-0.2, len(columns) - 0.4)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"{metric} (seed mean)")
    shown_note = f"best {len(shown)} of {len(configs)}" if top is not None else f"{len(shown)}"
    ax.set_title(title or f"parallel coordinates, {shown_note} configurations", fontsize=10)
    attach_data(fig, positions=positions, means=means)
    return fig
