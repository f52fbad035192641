"""Bar charts: per-domain scores with intervals, and parameter importances."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeper.plots._interval import t_factor
from sweeper.plots.configs import Config, grid_distribution
from sweeper.plots.grid import attach_data, group_title
from sweeper.plots.lines import _palette
from sweeper.report import DOMAIN_AVERAGE, DomainTable

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from optuna.distributions import BaseDistribution


def domains(tables: Sequence[DomainTable], *, title: str | None = None) -> Figure:
    """Per-domain bars: one panel per table, the held-out domains along x with the Avg group
    last, one bar (one colour) per method, each with its 95% Student-t interval over seeds
    (t with n - 1 degrees of freedom times the sem; for Avg, the table's avg_sem with the
    smallest n of the row).

    The bar heights are in ``figure_data(fig)["heights"]``: per table, an array of
    methods x (domains + Avg), NaN where a cell has no value.

    Raises:
        ValueError: `tables` is empty.
    """
    if not tables:
        raise ValueError("no domain tables to draw")
    from matplotlib.figure import Figure

    from sweeper.plots.configs import label as format_axis_value

    first = tables[0]
    fig = Figure(
        figsize=(max(7.0, 1.25 * (len(first.domains) + 1) + 2), 4.2 * len(tables)),
        layout="constrained",
    )
    axes = fig.subplots(len(tables), 1, squeeze=False)[:, 0]
    heights: list[np.ndarray] = []
    tops: list[float] = []
    for ax, table in zip(axes, tables, strict=True):
        labels = [format_axis_value(d) for d in table.domains] + [DOMAIN_AVERAGE]
        rows = len(table.rows)
        width = 0.8 / max(rows, 1)
        matrix = np.full((rows, len(labels)), math.nan)
        for i, (method, colour) in enumerate(zip(table.rows, _palette(rows), strict=True)):
            means = [*table.means[i], table.avg[i]]
            sems = [*table.sems[i], table.avg_sem[i]]
            ns = [*table.counts[i], min(table.counts[i], default=0)]
            y = np.array([math.nan if m is None else m for m in means], dtype=float)
            err = np.array(
                [math.nan if s is None else t_factor(n) * s for s, n in zip(sems, ns, strict=True)]
            )
            matrix[i] = y
            reach = y + np.where(np.isfinite(err), err, 0)
            tops += [float(v) for v in reach[np.isfinite(reach)]]
            x = np.arange(len(labels)) - 0.4 + width * (i + 0.5)
            ax.bar(
                x,
                np.nan_to_num(y),
                width,
                yerr=np.where(np.isfinite(err), err, 0),
                color=colour,
                capsize=2,
                label=format_axis_value(method),
                error_kw={"lw": 0.8},
            )
        heights.append(matrix)
        ax.axvline(len(labels) - 1.5, color="grey", lw=0.8, ls=":")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(f"held-out {table.col_axis}")
        ax.set_ylabel(f"{table.metric} ({table.direction})")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title=table.row_axis, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title(
            group_title(table.group)
            if table.group
            else f"{table.metric} per held-out {table.col_axis}: seed mean with 95% interval",
            fontsize=10,
        )
        finite = matrix[np.isfinite(matrix)]
        if finite.size and finite.min() > 0 and tops:
            ax.set_ylim(0, max(tops) * 1.05)
    if title:
        fig.suptitle(title, fontsize=11)
    attach_data(fig, heights=heights)
    return fig


def fanova_importances(
    configs: Sequence[Config],
    distributions: Mapping[str, BaseDistribution] | None = None,
    *,
    direction: str = "minimize",
) -> dict[str, float]:
    """fANOVA importances (Optuna, seed 0) over configurations judged by their seed means.

    Builds an in-memory Optuna study with one COMPLETE trial per configuration. Parameters with
    one value only are left out (they explain nothing).

    Args:
        configs: the configurations.
        distributions: each parameter's distribution; default `grid_distribution` of the values
            seen (categorical for strings, log float for positive values spanning two decades).
        direction: the study's direction.

    Returns:
        Parameter -> importance (they sum to 1), most important first.

    Raises:
        ValueError: fewer than two configurations, or no parameter varies.
    """
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import create_trial

    if len(configs) < 2:
        raise ValueError(f"importances need at least two configurations (got {len(configs)})")
    names = list(configs[0].params)
    seen: dict[str, list[Any]] = {
        n: list(dict.fromkeys(c.params[n] for c in configs)) for n in names
    }
    dists = (
        dict(distributions)
        if distributions is not None
        else {n: grid_distribution(v) for n, v in seen.items()}
    )
    keep = [n for n in names if len(seen[n]) > 1 and n in dists]
    if not keep:
        raise ValueError("no parameter takes more than one value")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if direction == "maximize" else "minimize")
    study.add_trials(
        [
            create_trial(
                params={n: c.params[n] for n in keep},
                distributions={n: dists[n] for n in keep},
                value=c.mean,
            )
            for c in configs
        ]
    )
    result = optuna.importance.get_param_importances(
        study, evaluator=FanovaImportanceEvaluator(seed=0)
    )
    return {k: float(v) for k, v in result.items()}


def importance(importances: Mapping[str, float], *, title: str | None = None) -> Figure:
    """Parameter importances as horizontal bars, the most important on top, values annotated.

    Raises:
        ValueError: `importances` is empty.
    """
    if not importances:
        raise ValueError("no importances to draw")
    from matplotlib.figure import Figure

    names = list(importances)[::-1]
    values = [importances[n] for n in names]
    fig = Figure(figsize=(7.0, 0.5 * len(names) + 1.4), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, values, color="#4c72b0")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, max(values) * 1.18 if max(values) > 0 else 1)
    ax.set_xlabel("fANOVA importance (seed-mean objective)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "parameter importance", fontsize=10)
    attach_data(fig, importances=dict(importances))
    return fig
