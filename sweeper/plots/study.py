"""`plot_study`: load what a kind of figure needs from a store and draw it.

The only part of `sweeper.plots` that reads a store; every figure function takes values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeper.errors import SweeperError
from sweeper.report import check_name

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from sweeper.plots.configs import Config
    from sweeper.report import DomainTable
    from sweeper.store import Store, StudyInfo
    from sweeper.study import Study


@dataclass(frozen=True)
class Options:
    """What `plot_study` passes on: a filter on parameters, the best fraction, a second study."""

    where: Mapping[str, Any] | None = None
    top: float | None = None
    other: str | None = None


def params_of(study: Study) -> list[str]:
    """The parameters telling a study's configurations apart: a search's space, or the grid
    axes with more than one value."""
    from sweeper.plots.configs import varying

    return list(study.search) if study.searched else varying(study.axes)


def study_configs(store: Store, info: StudyInfo, frame: pd.DataFrame | None = None) -> list[Config]:
    """The study's configurations in the order `sweeper best` ranks them (`study_best`: best
    seed mean first; ties: more seeds, then axis order)."""
    from sweeper.plots.configs import configurations
    from sweeper.report import study_best

    study = info.study
    frame = metric_frame(store, info) if frame is None else frame
    params = params_of(study)
    configs = configurations(frame, params, study.metric, study.direction)
    ranked = study_best(frame, study)
    rank = {
        tuple(_key(v) for v in row): k
        for k, row in enumerate(ranked[params].itertuples(index=False, name=None))
    }
    last = len(rank)  # not ranked: cannot happen for trials of the frame; keep them last
    return sorted(configs, key=lambda c: rank.get(tuple(_key(c.params[p]) for p in params), last))


def _key(value: Any) -> Any:
    """A parameter value compared across the store's JSON and the study file (1 == 1.0)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def metric_frame(store: Store, info: StudyInfo, *, full: bool = False) -> pd.DataFrame:
    """The study's trials with its metric as a column (only that metric unless `full`)."""
    frame = store.frame(info.id, metrics=full, bookkeeping=full)
    frame[info.study.metric] = frame["value"]
    return frame


def is_per_domain(study: Study) -> bool:
    """Whether a study has the per-domain layout (a ``method`` and a ``target`` axis)."""
    return {"method", "target"} <= set(study.axes)


def domain_tables_of(study: Study, frame: pd.DataFrame) -> list[DomainTable]:
    """The per-domain tables `sweeper table NAME --layout domains` prints.

    Raises:
        SweeperError: the study has no ``method`` and ``target`` axes.
    """
    from sweeper.report import study_domain_tables

    if not is_per_domain(study):
        raise SweeperError(
            f"study {study.name!r} has no 'method' and 'target' axes for per-domain bars; "
            f"its axes: {', '.join(study.axes) or '(none)'}"
        )
    return study_domain_tables(frame, study)


def search_means(store: Store, info: StudyInfo) -> list[float | None]:
    """A searched study's seed mean per proposal, in proposal order (None: not complete)."""
    from sweeper import search

    study = info.study
    if not study.searched:
        raise SweeperError(
            f"study {info.name!r} is a grid; the history is for searched studies "
            "(kind tpe or random)"
        )
    proposals = store.proposals(info.id)
    trials = store.search_trials(info.id)
    history = search.summarize(study, proposals, trials)
    # The seed mean whatever the study's aggregate, as the tables show.
    by_params: dict[str, list[float]] = {}
    for t in trials:
        if t.state == "completed" and t.value is not None:
            by_params.setdefault(t.params, []).append(t.value)
    from sweeper.canonical import canonical_json

    out: list[float | None] = []
    for c in history:
        values = by_params.get(canonical_json(c.params), [])
        out.append(sum(values) / len(values) if c.state == search.COMPLETE and values else None)
    return out


def _where(configs: list[Config], where: Mapping[str, Any] | None) -> list[Config]:
    """The configurations whose parameters equal every value of `where` (compared as text, so
    that ``{"lr": "0.001"}`` from a command line matches 0.001)."""
    from sweeper.plots.configs import label as format_axis_value

    if not where:
        return configs
    known = set(configs[0].params) if configs else set()
    for key in where:
        check_name("parameter", key, sorted(known))
    return [
        c
        for c in configs
        if all(
            format_axis_value(c.params[k]) == format_axis_value(v) or c.params[k] == v
            for k, v in where.items()
        )
    ]


def _heatmap(store: Store, info: StudyInfo, opts: Options) -> Figure:
    from sweeper.plots.grid import heatmap
    from sweeper.report import study_grid_tables

    study = info.study
    return heatmap(
        study_grid_tables(metric_frame(store, info), study),
        direction=study.direction,
        title=f"{study.name}: {study.metric} ({study.direction}), mean over seeds; "
        "best cell outlined",
    )


def _curves(store: Store, info: StudyInfo, opts: Options) -> Figure:
    from sweeper.plots.lines import curves

    configs = _where(study_configs(store, info), opts.where)
    if not configs:
        raise SweeperError(
            f"no completed configuration of {info.name!r} matches {dict(opts.where or {})}"
        )
    shown = configs[: 8 if opts.top is None else max(1, round(opts.top * len(configs)))]
    ids = [t for c in shown for t in c.ids]
    keys = [k for k in shown[0].params if len({repr(c.params[k]) for c in shown}) > 1]
    return curves(
        shown,
        store.curves(ids),
        label_keys=keys or None,
        title=f"{info.name}: the best {len(shown)} of {len(configs)} configurations",
    )


def _domains(store: Store, info: StudyInfo, opts: Options) -> Figure:
    from sweeper.plots.bars import domains

    study = info.study
    return domains(
        domain_tables_of(study, metric_frame(store, info)),
        title=f"{study.name}: {study.metric} per held-out domain",
    )


def _history(store: Store, info: StudyInfo, opts: Options) -> Figure:
    from sweeper.plots.lines import history

    runs = {info.name: search_means(store, info)}
    if opts.other is not None:
        other = store.study(opts.other)
        runs[other.name] = search_means(store, other)
    study = info.study
    return history(runs, direction=study.direction, metric=study.metric)


def _parallel(store: Store, info: StudyInfo, opts: Options) -> Figure:
    from sweeper.plots.parallel import parallel

    study = info.study
    scales: dict[str, Any] = {}
    for name, dist in study.search.items():
        scales[name] = (
            "categorical" if dist["type"] == "categorical" else ("log" if dist["log"] else "linear")
        )
    configs = _where(study_configs(store, info), opts.where)
    return parallel(
        configs,
        metric=study.metric,
        direction=study.direction,
        scales=scales,
        top=opts.top,
        title=f"{study.name}: configurations by seed mean",
    )


def _importance(store: Store, info: StudyInfo, opts: Options) -> Figure:
    from sweeper.plots.bars import fanova_importances, importance

    study = info.study
    dists = None
    if study.searched:
        from sweeper import search

        dists = search.distributions(study)
    configs = study_configs(store, info)
    try:
        values = fanova_importances(configs, dists, direction=study.direction)
    except ValueError as exc:
        raise SweeperError(f"cannot compute importances for {info.name!r}: {exc}") from None
    return importance(
        values, title=f"{study.name}: fANOVA importance over {len(configs)} configurations"
    )


#: kind -> the function drawing it from a store.
PLOTS: dict[str, Callable[[Store, StudyInfo, Options], Figure]] = {
    "heatmap": _heatmap,
    "curves": _curves,
    "domains": _domains,
    "history": _history,
    "parallel": _parallel,
    "importance": _importance,
}


def plot_study(
    store: Store,
    name: str,
    kind: str,
    *,
    where: Mapping[str, Any] | None = None,
    top: float | None = None,
    other: str | None = None,
) -> Figure:
    """Draw one kind of figure for a stored study.

    Args:
        store: an open store.
        name: the study.
        kind: one of `PLOTS`: heatmap, curves, domains, history, parallel, importance.
        where: curves and parallel: keep configurations with these parameter values.
        top: parallel: the best fraction of configurations to keep; curves: the best
            fraction to draw (default the best 8).
        other: history: a second searched study drawn in the same panel (e.g. random vs TPE).

    Raises:
        UnknownNameError: ``unknown plot kind 'x'; choose one of: curves, domains, ...``, or a
            `where` key that is not a parameter.
        UnknownStudyError: no such study.
        SweeperError: the study cannot have this kind of figure (history of a grid, domains
            without method/target axes, no curves).
    """
    check_name("plot kind", kind, list(PLOTS))
    info = store.study(name)
    try:
        return PLOTS[kind](store, info, Options(where=where, top=top, other=other))
    except ValueError as exc:
        raise SweeperError(f"cannot draw {kind} for {name!r}: {exc}") from None
