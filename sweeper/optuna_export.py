"""Export a study to an Optuna storage, one COMPLETE trial per configuration, so that
optuna-dashboard and `optuna.visualization` can show it.

Each configuration's value is the seed mean of the study metric; its seeds ride along as user
attributes (``seed_values``, ``seeds``, ``n``, ``ci_low``, ``ci_high``: the 95% Student-t
interval) and the seed means of its per-epoch validation curve (else its first curve) become
intermediate values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweeper.errors import SweeperError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from sweeper.plots.configs import Config
    from sweeper.store import Store

#: the curve exported as intermediate values when a trial has it (else its first curve).
VALIDATION_CURVES = ("validation", "val_loss", "valid_loss", "val_mse")


class OptunaStudyExistsError(SweeperError):
    """The target Optuna storage already holds a study of that name."""


def export_optuna(store: Store, name: str, storage_url: str, *, intermediate: bool = True) -> int:
    """Write study `name` to the Optuna storage at `storage_url` as a study of the same name.

    Distributions: a grid axis with positive values spanning two decades or more is a log
    FloatDistribution over its range, any other axis a CategoricalDistribution of its values
    (axes with one value are left out); a searched study keeps its search distributions and
    the sampler's raw values (before floors).

    Args:
        store: an open store.
        name: the study.
        storage_url: an Optuna storage, e.g. ``sqlite:///optuna.db`` or any SQLAlchemy URL.
        intermediate: write the per-epoch curve as intermediate values. Optuna's RDB storage
            writes them one row at a time (about 2 ms each on SQLite: 40 s for obesity's
            192 x 200 epochs); False writes only the final values (under a second).

    Returns:
        The number of trials written (the completed configurations).

    Raises:
        UnknownStudyError: no such study in `store`.
        OptunaStudyExistsError: the storage already holds an Optuna study named `name`.
        SweeperError: the storage cannot be opened.
    """
    import optuna
    from optuna.trial import create_trial

    from sweeper.plots._interval import interval
    from sweeper.plots.configs import grid_distribution
    from sweeper.plots.study import metric_frame, study_configs

    info = store.study(name)
    study = info.study
    configs = study_configs(store, info, metric_frame(store, info))
    configs.sort(key=lambda c: min(c.ids))  # in the order they were run
    dists: dict[str, BaseDistribution]
    raw: dict[tuple[Any, ...], dict[str, Any]] = {}
    if study.searched:
        from sweeper import search

        dists = search.distributions(study)
        for p in store.proposals(info.id):
            raw[tuple(p.params[k] for k in study.search)] = p.raw
    else:
        dists = {k: grid_distribution(study.axes[k]) for k in configs[0].params} if configs else {}
    curves = store.curves([t for c in configs for t in c.ids]) if intermediate else {}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.get_storage(storage_url)
    except Exception as exc:  # SQLAlchemy and Optuna raise many kinds for a bad URL
        raise SweeperError(f"cannot open the Optuna storage: {type(exc).__name__}: {exc}") from None
    if name in optuna.get_all_study_names(storage):
        raise OptunaStudyExistsError(
            f"the Optuna storage already holds a study named {name!r}; export to another storage "
            f"or delete it first: optuna delete-study --study-name {name} --storage URL"
        )
    ostudy = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize" if study.direction == "maximize" else "minimize",
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ostudy.set_metric_names([study.metric])
    ostudy.set_user_attr("sweeper_study", name)
    ostudy.set_user_attr("description", study.description)
    trials = []
    for config in configs:
        stats = interval(config.values)
        params = (
            raw.get(tuple(config.params.values()), config.params)
            if study.searched
            else config.params
        )
        trials.append(
            create_trial(
                params={k: params[k] for k in dists},
                distributions=dists,
                value=config.mean,
                intermediate_values=_intermediate(config, curves),
                user_attrs={
                    "seed_values": list(config.values),
                    "seeds": list(config.seeds),
                    "n": stats.n,
                    "ci_low": None if stats.n < 2 else stats.low,
                    "ci_high": None if stats.n < 2 else stats.high,
                    "sweeper_trial_ids": list(config.ids),
                },
            )
        )
    ostudy.add_trials(trials)
    return len(trials)


def _intermediate(config: Config, curves: dict[int, dict[str, list[float]]]) -> dict[int, float]:
    """Epoch (1-based) -> seed mean of the configuration's validation curve (else its first
    curve), over the seeds long enough to have that epoch; finite values only."""
    import math

    mine = [curves[t] for t in config.ids if t in curves]
    names = [n for n in VALIDATION_CURVES if any(n in c for c in mine)]
    if not names and mine and mine[0]:
        names = [next(iter(mine[0]))]
    if not names:
        return {}
    series = [c[names[0]] for c in mine if names[0] in c]
    out: dict[int, float] = {}
    for epoch in range(1, max(len(s) for s in series) + 1):
        values = [s[epoch - 1] for s in series if len(s) >= epoch and math.isfinite(s[epoch - 1])]
        if values:
            out[epoch] = sum(values) / len(values)
    return out
