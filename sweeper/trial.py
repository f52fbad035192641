"""The `Trial` a user's training function receives, and `TrialPruned`, which stops it early.

A study that names a user's function (``task = "train.py:train"``) calls
``train(params, seed, trial)`` once per trial. Through `trial` the function learns where its data
and its artifact directory are, and reports curve points::

    def train(params: dict, seed: int, trial: sweeper.Trial) -> dict[str, float]:
        for epoch in range(1, params["epochs"] + 1):
            ...
            trial.report(epoch, train_loss=train_loss, val_loss=val_loss)  # may raise TrialPruned
        torch.save(model.state_dict(), trial.dir / "model.pt")
        return {"val_loss": val_loss, "val_acc": val_acc}

How curves are stored: each curve keeps its values in report order (``curves["val_loss"]``, as
every task stores them). When the steps of a curve are exactly 1, 2, 3, ... nothing else is
stored; otherwise the steps go to a parallel curve ``"<name>@step"`` (e.g. ``val_loss@step`` =
``[100, 200, 300]``), read back with `curve_steps`. A pruner judges a value by its position in
the curve (1-based), the way it reads the curves of earlier trials.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: suffix of the curve that holds another curve's step numbers (only when not 1, 2, 3, ...).
STEP_SUFFIX = "@step"


class TrialPruned(Exception):
    """Raised by `Trial.report` when the study's pruner stops the trial.

    A user's function may let it propagate (the trial is recorded as pruned, with its curves so
    far) or raise it itself to stop a trial that is going nowhere.
    """


class Trial:
    """One run of a user's function: its identity, parameters, places, and curve reporting.

    Attributes (read-only):
        id: the trial's database id.
        seed: the replicate seed; seed everything from it.
        params: the trial's full parameters (a fresh copy on each access).
        data_dir: where datasets live.
        device: torch device string, e.g. "cpu" or "cuda:0".
        dir: a directory for the artifacts of this trial (checkpoints, plots), created on
            first access.
    """

    def __init__(
        self,
        trial_id: int,
        seed: int,
        params: Mapping[str, Any],
        *,
        data_dir: Path,
        dir: Path,
        device: str = "cpu",
        heartbeat: Callable[[], None] | None = None,
        should_prune: Callable[[int, int, float], bool] | None = None,
        prune_curve: str | None = None,
    ) -> None:
        """Args:
        trial_id, seed, params: the trial (see the attributes).
        data_dir, device: from the worker's run context.
        dir: the trial's artifact directory, e.g. ``<root>/<study>/<trial key>``; not created
            until `dir` is read.
        heartbeat: called on every report, so the worker can extend its lease.
        should_prune: ``should_prune(trial_id, position, value)``, asked with each value of
            the `prune_curve`; True stops the trial.
        prune_curve: the curve the pruner judges (None: never prune).
        """
        self._id = trial_id
        self._seed = seed
        self._params = dict(params)
        self._data_dir = data_dir
        self._dir = dir
        self._device = device
        self._heartbeat = heartbeat
        self._should_prune = should_prune
        self._prune_curve = prune_curve
        self._values: dict[str, list[float]] = {}
        self._steps: dict[str, list[int]] = {}

    @property
    def id(self) -> int:
        return self._id

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def device(self) -> str:
        return self._device

    @property
    def dir(self) -> Path:
        self._dir.mkdir(parents=True, exist_ok=True)
        return self._dir

    def report(self, step: int, /, **values: float) -> None:
        """Record one point of each named curve at `step`, then ask the pruner.

        Args:
            step: an int (e.g. the epoch), increasing from one report of a curve to the next.
            values: curve name -> a finite real number (bool is not a number).

        Raises:
            TypeError: `step` is not an int, or a value is not a real number.
            ValueError: a value is NaN or infinite, a step does not increase, or a name is
                empty or ends with ``@step``. Nothing of this report is recorded.
            TrialPruned: the study's pruner stops the trial (after recording this report).
        """
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"step must be an int (got {type(step).__name__} {step!r})")
        step = int(step)
        checked: dict[str, float] = {}
        for name, value in values.items():
            if not name or name.endswith(STEP_SUFFIX):
                raise ValueError(f"curve name {name!r} is not allowed (empty or ends with '@step')")
            steps = self._steps.get(name)
            if steps and step <= steps[-1]:
                raise ValueError(
                    f"step {step} of curve {name!r} does not come after its last step {steps[-1]}"
                )
            checked[name] = finite_number(name, value)
        for name, value in checked.items():
            self._values.setdefault(name, []).append(value)
            self._steps.setdefault(name, []).append(step)
        if self._heartbeat is not None:
            self._heartbeat()
        curve = self._prune_curve
        if curve is not None and curve in checked and self._should_prune is not None:
            position = len(self._values[curve])
            if self._should_prune(self._id, position, checked[curve]):
                raise TrialPruned(f"pruned at step {step} ({curve} = {checked[curve]:.6g})")

    @property
    def curves(self) -> dict[str, list[float]]:
        """The curves reported so far (a copy), with ``<name>@step`` where steps are not 1..n."""
        out: dict[str, list[float]] = {}
        for name, values in self._values.items():
            out[name] = list(values)
            steps = self._steps[name]
            if steps != list(range(1, len(steps) + 1)):
                out[name + STEP_SUFFIX] = [float(s) for s in steps]
        return out

    def last_values(self) -> dict[str, float]:
        """The last reported value of each curve (the metrics of a pruned trial)."""
        return {name: values[-1] for name, values in self._values.items()}

    def __repr__(self) -> str:
        return f"Trial(id={self._id}, seed={self._seed}, params={self._params!r})"


def curve_steps(curves: Mapping[str, list[float]], name: str) -> list[int]:
    """The step of each value of curve `name`: its ``@step`` curve, or 1, 2, 3, ...

    Raises:
        KeyError: there is no curve `name`.
    """
    steps = curves.get(name + STEP_SUFFIX)
    if steps is not None:
        return [int(s) for s in steps]
    return list(range(1, len(curves[name]) + 1))


def finite_number(name: str, value: object) -> float:
    """`value` as a float when it is a finite real number; bool is not one.

    Raises:
        TypeError: not a real number (the message names `name`).
        ValueError: NaN or infinite (the message names `name`).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = "; call .item() on a tensor" if hasattr(value, "item") else ""
        raise TypeError(
            f"value of {name!r} must be a real number "
            f"(got {type(value).__name__} {value!r:.60}{hint})"
        )
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"value of {name!r} is {number} (must be finite)")
    return number


def check_metrics(returned: object, metric: str) -> dict[str, float]:
    """The final metrics a trial returned, checked: a mapping of name -> finite number.

    Args:
        returned: what the user's function returned (or the command printed).
        metric: the study's metric, which must be among the keys.

    Raises:
        ValueError: the one-line reason the trial failed, e.g. ``metric 'val_loss' is nan``
            or ``returned metrics have no 'val_loss' (returned keys: acc, loss)``.
    """
    if not isinstance(returned, Mapping):
        raise ValueError(
            f"metrics must be a dict of name -> number such as {{{metric!r}: 0.12}} "
            f"(got {type(returned).__name__})"
        )
    if metric not in returned:
        keys = ", ".join(sorted(str(k) for k in returned)) or "none"
        raise ValueError(f"returned metrics have no {metric!r} (returned keys: {keys})")
    metrics: dict[str, float] = {}
    for name, value in returned.items():
        if not isinstance(name, str):
            raise ValueError(f"metric names must be strings (got {name!r})")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(
                f"metric {name!r} must be a number (got {type(value).__name__} {value!r:.60})"
            )
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"metric {name!r} is {number}")
        metrics[name] = number
    return metrics
