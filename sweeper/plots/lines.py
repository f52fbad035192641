"""Line plots: per-epoch curves per configuration, and a search's best-so-far history."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from sweeper.plots._interval import interval
from sweeper.plots.configs import Config
from sweeper.plots.grid import attach_data

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def config_label(config: Config, names: Sequence[str] | None = None) -> str:
    """``optimizer=adam lr=0.001``: the configuration's values of `names` (default: all)."""
    from sweeper.plots.configs import label as format_axis_value

    keys = list(config.params) if names is None else list(names)
    return " ".join(f"{k}={format_axis_value(config.params[k])}" for k in keys) or "all"


def seed_band(series: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per epoch, over the seeds' curves long enough to reach it: the mean and its 95% interval
    (low, high; NaN where fewer than two seeds have a finite value)."""
    length = max((len(s) for s in series), default=0)
    stats = [interval([s[e] for s in series if len(s) > e]) for e in range(length)]
    return (
        np.array([i.mean for i in stats]),
        np.array([i.low for i in stats]),
        np.array([i.high for i in stats]),
    )


def curves(
    configs: Sequence[Config],
    trial_curves: Mapping[int, Mapping[str, Sequence[float]]],
    *,
    names: Sequence[str] | None = None,
    label_keys: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Per-epoch curves: one panel per curve name (e.g. ``train_loss``, ``validation``), one
    line per configuration (the seed mean) with its 95% Student-t band over seeds.

    Args:
        configs: the configurations to draw, in legend order (their trial ids key the curves).
        trial_curves: trial id -> curve name -> per-epoch values (`Store.curves`).
        names: the curves to draw; default every curve found, in first-seen order.
        label_keys: the parameters that name a configuration in the legend; default all.
        title: the figure title.

    The seed means drawn are in ``figure_data(fig)["means"]``: curve name -> one array per config.

    Raises:
        ValueError: no configuration has a curve.
    """
    from matplotlib.figure import Figure

    found: list[str] = []
    for config in configs:
        for tid in config.ids:
            for name in trial_curves.get(tid, {}):
                if name not in found:
                    found.append(name)
    panels = list(names) if names is not None else found
    if not panels or not configs:
        raise ValueError("no per-epoch curves among these trials")
    fig = Figure(figsize=(6.0 * len(panels), 4.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = _palette(len(configs))
    means: dict[str, list[np.ndarray]] = {}
    for ax, name in zip(axes, panels, strict=True):
        positive = True
        for config, colour in zip(configs, colours, strict=True):
            series = [trial_curves[t][name] for t in config.ids if name in trial_curves.get(t, {})]
            mean, low, high = seed_band(series)
            means.setdefault(name, []).append(mean)
            if not len(mean):
                continue
            epochs = np.arange(1, len(mean) + 1)
            ax.plot(epochs, mean, color=colour, lw=1.4, label=config_label(config, label_keys))
            ax.fill_between(epochs, low, high, color=colour, alpha=0.18, lw=0)
            positive &= bool(np.nanmin(mean) > 0)
        finite = np.concatenate([m[np.isfinite(m)] for m in means[name]] + [np.empty(0)])
        if positive and finite.size and finite.max() / finite.min() >= 20:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name}: seed mean with 95% band", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    attach_data(fig, means=means)
    return fig


def best_so_far(values: Sequence[float | None], direction: str) -> np.ndarray:
    """The running best of `values` (None and NaN skipped; NaN before the first value)."""
    out = np.full(len(values), math.nan)
    best = math.nan
    for k, v in enumerate(values):
        if v is not None and math.isfinite(v):
            better = v < best if direction == "minimize" else v > best
            best = v if math.isnan(best) or better else best
        out[k] = best
    return out


def history(
    runs: Mapping[str, Sequence[float | None]],
    *,
    direction: str,
    metric: str = "value",
    title: str | None = None,
) -> Figure:
    """Searched studies' progress: each configuration's seed mean (dots) and the best so far
    (a step line) against its proposal number; several studies (e.g. TPE and random) overlaid
    in one panel, one colour each.

    Args:
        runs: study label -> seed mean of each proposal in proposal order (None: not complete).
        direction: ``minimize`` or ``maximize``; metric: the axis label.

    The best-so-far arrays are in ``figure_data(fig)["best"]``: label -> array.

    Raises:
        ValueError: `runs` is empty.
    """
    if not runs:
        raise ValueError("no searched study to draw")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.8), layout="constrained")
    ax = fig.subplots()
    best: dict[str, np.ndarray] = {}
    everything: list[float] = []
    for (label, values), colour in zip(runs.items(), _palette(len(runs)), strict=True):
        numbers = np.arange(1, len(values) + 1)
        points = np.array([math.nan if v is None else v for v in values], dtype=float)
        everything += [float(v) for v in points[np.isfinite(points)]]
        ax.scatter(numbers, points, s=14, color=colour, alpha=0.45)
        best[label] = best_so_far(values, direction)
        ax.step(
            numbers, best[label], where="post", color=colour, lw=2, label=f"{label}: best so far"
        )
    if everything and min(everything) > 0 and max(everything) / min(everything) >= 20:
        ax.set_yscale("log")
    ax.set_xlabel("proposal number")
    ax.set_ylabel(f"{metric} (seed mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{metric}: best so far ({direction})", fontsize=10)
    attach_data(fig, best=best)
    return fig


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    """`n` distinct colours (tab10, then tab20 for more)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(n)]
