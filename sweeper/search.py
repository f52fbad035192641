"""Searched studies: Optuna proposes configurations; the sweeper database remembers everything.

The data flow, every time a worker finds the queue empty while the budget is not spent::

    store: proposals + their trials  ->  summarize (one `ConfigResult` per proposal, seeds
      aggregated)  ->  build_study (a fresh in-memory Optuna study holding that history)
      ->  sampler.ask (constant liar for configurations still running)  ->  store: new
      proposals, one trial per seed

Nothing about the search lives only in memory: the Optuna study is rebuilt from the database
for every batch of asks, with a sampler seeded by the study's `sampler_seed` and the number of
proposals so far, so one worker's sequence of proposals is reproducible and a resumed study
goes on where it stopped. Seeds are replicates, not a search dimension: a configuration's value
is the aggregate (mean by default) of its seeds, told to the sampler once all of them are done.

Distributions (``Study.search``), as `sweeper.spec` normalises them::

    {"type": "float", "low": 1e-5, "high": 0.1, "log": True, "floor": 1e-4}
    {"type": "int", "low": 50, "high": 200, "log": False, "step": 50}
    {"type": "categorical", "choices": ["sgd", "adam"]}

With ``floor`` a drawn value below it becomes 0: the sampler searches a continuous range and
learns whether the "off" end is good, while the task sees an exact 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sweeper.canonical import canonical_json
from sweeper.errors import SweeperError
from sweeper.plan import PlannedTrial, trial_key
from sweeper.samplers import make_pruner, make_sampler
from sweeper.study import Study

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

#: configuration states, as Optuna's TrialState names them.
COMPLETE, RUNNING, PRUNED, FAIL = "complete", "running", "pruned", "fail"
#: asks an ``ask = "auto"`` study's budget is spread over, at least: the rounds the sampler and
#: the pruner learn from finished configurations.
AUTO_ROUNDS = 4
#: lanes of the widest vector the C kernel uses: an automatic ask fills whole blocks of them.
AUTO_LANES = 16


def ask_size(study: Study, group_size: int) -> int:
    """How many configurations one ask proposes: the study's ``ask``, or for ``"auto"`` as
    many as keep a batched group large (its seeds times this many trials, up to `group_size`,
    rounded down to whole blocks of `AUTO_LANES` where that leaves one) while the budget still
    takes `AUTO_ROUNDS` asks. Per-trial runs (`group_size` 1) ask one at a time.
    """
    if study.ask != "auto":
        return int(study.ask)
    seeds = max(1, len(study.seeds))
    by_group = max(1, group_size // seeds)
    trials = by_group * seeds
    if trials >= AUTO_LANES:
        # Whole blocks of lanes: a last, partly filled block costs as much as a full one.
        by_group = max(1, (trials // AUTO_LANES * AUTO_LANES) // seeds)
    by_budget = -(-(study.budget or 1) // AUTO_ROUNDS)
    return max(1, min(by_group, by_budget))


@dataclass(frozen=True)
class Proposal:
    """A stored proposal: its number, full task parameters and the sampler's raw values."""

    number: int
    params: dict[str, Any]
    raw: dict[str, Any]


@dataclass(frozen=True)
class TrialResult:
    """What the search needs of one stored trial."""

    params: str  # canonical JSON, as stored: the link to its proposal
    seed: int
    state: str
    value: float | None
    curve: list[float] | None = None  # the task's per-epoch validation values, if any


@dataclass(frozen=True)
class ConfigResult:
    """A proposal with its seeds combined: what the sampler is told about it."""

    number: int
    params: dict[str, Any]
    raw: dict[str, Any]
    state: str  # COMPLETE, RUNNING, PRUNED or FAIL
    value: float | None  # the seed aggregate (COMPLETE only)
    seeds_done: int
    #: epoch (1-based) -> mean over the seeds that reached it of the validation value.
    intermediate: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class NewProposal:
    """A configuration just asked for, with its trials (one per seed) to enqueue."""

    raw: dict[str, Any]
    params: dict[str, Any]
    trials: list[PlannedTrial]


def distributions(study: Study) -> dict[str, BaseDistribution]:
    """Optuna distributions of the study's searched parameters, in file order."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, BaseDistribution] = {}
    for name, d in study.search.items():
        if d["type"] == "categorical":
            out[name] = CategoricalDistribution(d["choices"])
        elif d["type"] == "int":
            out[name] = IntDistribution(d["low"], d["high"], log=d["log"], step=d.get("step", 1))
        else:
            out[name] = FloatDistribution(d["low"], d["high"], log=d["log"], step=d.get("step"))
    return out


def to_params(study: Study, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The task parameters of a configuration: fixed values plus the raw values, floors applied."""
    params = dict(study.fixed)
    for name, d in study.search.items():
        value = raw[name]
        floor = d.get("floor")
        if floor is not None and value < floor:
            value = 0 if d["type"] == "int" else 0.0
        params[name] = value
    return params


def example_params(study: Study) -> dict[str, Any]:
    """One valid configuration (the first choice, the low end), for checks before any ask."""
    raw = {
        name: d["choices"][0] if d["type"] == "categorical" else d["low"]
        for name, d in study.search.items()
    }
    return to_params(study, raw)


def seed_plan(
    study: Study,
    proposals: Sequence[Proposal],
    group_key: Callable[[Mapping[str, Any]], str],
) -> list[PlannedTrial]:
    """Every seed's trial of every proposal (enqueueing them again is a no-op): a study whose
    seeds grew runs the new seeds of its existing configurations too."""
    plan = []
    for p in proposals:
        group = group_key(p.params)
        for seed in study.seeds:
            plan.append(PlannedTrial(trial_key(study.task, p.params, seed), p.params, seed, group))
    return plan


def summarize(
    study: Study, proposals: Sequence[Proposal], trials: Sequence[TrialResult]
) -> list[ConfigResult]:
    """Combine each proposal's trials into one `ConfigResult`, in proposal order.

    A configuration is COMPLETE when every seed of the study completed with a value (its value is
    the `study.aggregate` of theirs), PRUNED as soon as one seed was pruned, FAIL when a seed
    failed and none is left to run, and RUNNING otherwise (queued or running seeds).
    """
    import numpy as np

    by_params: dict[str, list[TrialResult]] = {}
    for t in trials:
        by_params.setdefault(t.params, []).append(t)
    seeds = set(study.seeds)
    out: list[ConfigResult] = []
    for p in proposals:
        mine = [t for t in by_params.get(canonical_json(p.params), []) if t.seed in seeds]
        done = [t for t in mine if t.state == "completed" and t.value is not None]
        states = {t.state for t in mine}
        value = None
        if "pruned" in states:
            state = PRUNED
        elif len({t.seed for t in done}) == len(seeds):
            state = COMPLETE
            values = np.array([t.value for t in done], dtype=float)
            value = float(np.median(values) if study.aggregate == "median" else values.mean())
        elif (
            "failed" in states or any(t.state == "completed" and t.value is None for t in mine)
        ) and not states & {"queued", "running"}:
            state = FAIL  # a seed failed (or completed without a finite value)
        else:
            state = RUNNING
        out.append(
            ConfigResult(
                number=p.number,
                params=p.params,
                raw=p.raw,
                state=state,
                value=value,
                seeds_done=len(done),
                intermediate=_mean_curve([t.curve for t in mine if t.curve]),
            )
        )
    return out


def _mean_curve(curves: Sequence[list[float]]) -> dict[int, float]:
    """Epoch (1-based) -> mean over the curves long enough to have that epoch (finite only)."""
    out: dict[int, float] = {}
    for epoch in range(1, max((len(c) for c in curves), default=0) + 1):
        values = [c[epoch - 1] for c in curves if len(c) >= epoch and math.isfinite(c[epoch - 1])]
        if values:
            out[epoch] = sum(values) / len(values)
    return out


def build_study(
    study: Study, history: Sequence[ConfigResult], sampler: optuna.samplers.BaseSampler | None
) -> optuna.Study:
    """A fresh in-memory Optuna study holding `history`: finished configurations with their
    values and per-epoch intermediate values, running ones as RUNNING (for the constant liar)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = make_pruner(study)
    direction: Literal["minimize", "maximize"] = (
        "maximize" if study.direction == "maximize" else "minimize"
    )
    ostudy = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
    dists = distributions(study)
    replay = isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    states = {
        COMPLETE: TrialState.COMPLETE,
        RUNNING: TrialState.RUNNING,
        PRUNED: TrialState.PRUNED,
        FAIL: TrialState.FAIL,
    }
    for config in history:
        params = {k: config.raw[k] for k in dists}
        if replay and config.state in (COMPLETE, PRUNED) and config.intermediate:
            # Successive halving keeps its rungs in system attributes that only its own prune()
            # calls write: replay the curve through it, then finish the trial.
            running = create_trial(params=params, distributions=dists, state=TrialState.RUNNING)
            ostudy.add_trial(running)
            frozen = ostudy.get_trials(deepcopy=False)[-1]
            storage = ostudy._storage
            for step, v in sorted(config.intermediate.items()):
                storage.set_trial_intermediate_value(frozen._trial_id, step, v)
                pruner.prune(ostudy, storage.get_trial(frozen._trial_id))
            values = [config.value] if config.value is not None else None
            storage.set_trial_state_values(frozen._trial_id, states[config.state], values)
            continue
        ostudy.add_trial(
            create_trial(
                params=params,
                distributions=dists,
                state=states[config.state],
                value=config.value if config.state == COMPLETE else None,
                intermediate_values=config.intermediate
                if config.state in (COMPLETE, PRUNED)
                else None,
            )
        )
    return ostudy


def propose(
    study: Study,
    history: Sequence[ConfigResult],
    n: int,
    group_key: Callable[[Mapping[str, Any]], str],
) -> list[NewProposal]:
    """Ask the sampler for `n` new configurations given `history` (in proposal order)."""
    ostudy = build_study(study, history, make_sampler(study, len(history)))
    dists = distributions(study)
    out: list[NewProposal] = []
    for _ in range(n):
        trial = ostudy.ask(dists)
        raw = dict(trial.params)
        params = to_params(study, raw)
        group = group_key(params)
        trials = [
            PlannedTrial(trial_key(study.task, params, seed), params, seed, group)
            for seed in study.seeds
        ]
        out.append(NewProposal(raw, params, trials))
    return out


def importances(study: Study, history: Sequence[ConfigResult]) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the completed configurations.

    Raises:
        SweeperError: fewer than two configurations completed, or no parameter varies.
    """
    import optuna

    done = [c for c in history if c.state == COMPLETE]
    if len(done) < 2:
        raise SweeperError(
            f"study {study.name!r} has {len(done)} completed configuration(s); importances "
            "need at least two"
        )
    ostudy = build_study(study, done, None)
    try:
        result = optuna.importance.get_param_importances(ostudy)
    except (RuntimeError, ValueError) as exc:
        raise SweeperError(f"cannot compute importances for {study.name!r}: {exc}") from None
    return {k: float(v) for k, v in result.items()}


class PruneCheck:
    """Decide, epoch by epoch, whether one running trial should stop.

    Holds an in-memory Optuna study with the history as it was when the trial was claimed plus
    the trial itself as RUNNING; each reported validation value is an intermediate value, and
    the study's pruner compares it with the finished configurations' seed means at that epoch.
    """

    def __init__(self, study: Study, history: Sequence[ConfigResult], raw: Mapping[str, Any]):
        from optuna.trial import TrialState, create_trial

        self._ostudy = build_study(study, history, None)
        dists = distributions(study)
        self._ostudy.add_trial(
            create_trial(
                params={k: raw[k] for k in dists}, distributions=dists, state=TrialState.RUNNING
            )
        )
        self._trial_id = self._ostudy.get_trials(deepcopy=False)[-1]._trial_id
        self._pruner = self._ostudy.pruner

    def __call__(self, epoch: int, value: float) -> bool:
        """Record the validation value of `epoch` (1-based); True means: stop this trial now."""
        if not math.isfinite(value):
            return False  # a diverged trial fails on its own; never prune on NaN
        storage = self._ostudy._storage
        storage.set_trial_intermediate_value(self._trial_id, epoch, value)
        return bool(self._pruner.prune(self._ostudy, storage.get_trial(self._trial_id)))
