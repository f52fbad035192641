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

Long trials can survive a kill (a preempted node, a SLURM time limit): save the state with
`Trial.checkpoint` now and then, and call `Trial.restore` at the start, which returns the last
saved state when a previous attempt of this very trial (same code, parameters and seed) saved
one::

    def train(params: dict, seed: int, trial: sweeper.Trial) -> dict[str, float]:
        model, opt = build(params, seed)
        start = 1
        state = trial.restore()                  # None on a first attempt
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            torch.set_rng_state(state["rng"])
            start = state["epoch"] + 1
        for epoch in range(start, params["epochs"] + 1):
            ...
            trial.report(epoch, val_loss=val_loss)
            trial.checkpoint({"epoch": epoch, "model": model.state_dict(),
                              "opt": opt.state_dict(), "rng": torch.get_rng_state()})
        return {"val_loss": val_loss}

`checkpoint` writes only when the run's interval has passed since the last write (`sweeper run
--checkpoint-every`, 60 s by default), so calling it every epoch is cheap. The curves reported
so far are saved with the state and come back with it. The state is written with `torch.save`
and read with ``torch.load(weights_only=True)``: tensors, numbers, strings, and lists, tuples
and dicts of them (a model's and an optimizer's ``state_dict``, RNG states); anything else
cannot be restored. It lives under ``$SWEEPER_CHECKPOINT_DIR`` (default: the user cache, see
`sweeper.checkpoints`), keyed by study and trial, and is deleted once the trial's outcome
(completed, failed or pruned) is recorded; only a killed attempt leaves it for the next one.

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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeper.checkpoints import TrialCheckpoint

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
        checkpoint: TrialCheckpoint | None = None,
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
        checkpoint: where `checkpoint` and `restore` keep the trial's state (None: the run
            keeps no checkpoints; `checkpoint` does nothing and `restore` returns None).
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
        self._checkpoint = checkpoint
        self._cadence = checkpoint.policy.cadence(1, checkpoint.key[:8]) if checkpoint else None
        self._saves = 0

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

    def checkpoint(self, state: Mapping[str, Any], *, force: bool = False) -> bool:
        """Save `state` (with the curves reported so far) for `restore`, when it is time.

        It is time when the run's checkpoint interval (``--checkpoint-every``, 60 s by default)
        has passed since this trial's last save, or when `force` is true. The file is replaced
        atomically: a kill while saving leaves the previous state. Call it as often as you
        like, e.g. after every epoch.

        Args:
            state: what your function needs to continue, e.g. ``{"epoch": 7, "model":
                model.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state()}``;
                tensors, numbers, strings, and lists, tuples and dicts of them.
            force: save now, whatever the interval.

        Returns:
            Whether the state was written (False when the run keeps no checkpoints, it is
            not yet time, or the file could not be written: a warning is logged).

        Raises:
            TypeError: `state` is not a dict.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a dict (got {type(state).__name__})")
        if self._checkpoint is None or self._cadence is None:
            return False
        self._saves += 1
        if not (self._cadence.epoch_done(self._saves) or force):
            return False
        written = self._checkpoint.save(
            {"user": dict(state), "values": self._values, "steps": self._steps}
        )
        self._cadence.saved()
        return written

    def restore(self) -> dict[str, Any] | None:
        """The state last saved by `checkpoint` in an earlier attempt of this trial, or None.

        Call it once, at the start, before reporting anything: the curves reported before the
        save come back too, so the next `report` continues them. A checkpoint written by other
        code, for other parameters or seed, or that cannot be read, is never returned (None).
        """
        if self._checkpoint is None:
            return None
        saved = self._checkpoint.load()
        if saved is None:
            return None
        values, steps = saved.get("values"), saved.get("steps")
        if isinstance(values, dict) and isinstance(steps, dict):
            self._values = {str(k): [float(v) for v in vs] for k, vs in values.items()}
            self._steps = {str(k): [int(s) for s in ss] for k, ss in steps.items()}
        user = saved.get("user")
        return dict(user) if isinstance(user, dict) else None

    def discard_checkpoint(self) -> None:
        """Delete this trial's checkpoint (the task does it once the trial has ended)."""
        if self._checkpoint is not None:
            self._checkpoint.remove()

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
