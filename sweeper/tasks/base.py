"""The contract between the worker and a task.

A task trains *groups* of trials: the per-trial executor hands it groups of one, the batched
executor groups of many compatible trials (those with equal `group_key`). A task yields one
`TrialOutcome` per trial as soon as that trial is finished, so the worker can record it at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pydantic import BaseModel

    from sweeper.checkpoints import CheckpointPolicy


@dataclass(frozen=True)
class TrialInput:
    """One trial handed to a task: its database id, full parameters and replicate seed."""

    trial_id: int
    key: str
    params: Mapping[str, Any]
    seed: int


@dataclass(frozen=True)
class TrialOutcome:
    """What a task reports for one trial.

    `error` is None for a completed trial; otherwise the trial failed and `metrics` may be empty.
    `curves` maps a curve name (e.g. ``train_loss``) to one value per epoch. `pruned` means the
    study's pruner stopped the trial early: its curves end at that epoch, and its metrics are
    those of that moment (stored, but never the trial's value). `log` is a bounded tail of what
    the trial printed (a command's stdout and stderr, a function's traceback), or None.
    """

    trial_id: int
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None
    pruned: bool = False
    log: str | None = None


@dataclass(frozen=True)
class RunContext:
    """Execution settings passed from the worker to the task.

    Attributes:
        data_dir: where datasets live (already resolved: flag, environment, cache).
        device: torch device string, "cpu" by default.
        batched: whether the task may train a group as one batched model.
        heartbeat: called by long-running tasks now and then (e.g. once per epoch) so the worker
            can extend its lease; cheap to call often.
        should_prune: ``should_prune(trial_id, epoch, value)`` with the trial's validation value
            after each epoch (1-based); True means stop the trial and yield it with
            ``pruned=True``. Tasks with a `validation_curve` call it; it is False unless the
            study has a pruner.
        checkpoints: where the study's trials save their training state, and how often
            (`sweeper.checkpoints`); None: never. A task that can resume loads a trial's
            checkpoint when it starts it, saves when the policy's cadence says so, and removes
            it once the trial's outcome is yielded and recorded (or the trial failed).
    """

    data_dir: Path
    device: str = "cpu"
    batched: bool = False
    heartbeat: Callable[[], None] = lambda: None
    should_prune: Callable[[int, int, float], bool] = lambda trial_id, epoch, value: False
    checkpoints: CheckpointPolicy | None = None


class Task(Protocol):
    """A trainable task: a built-in one (`sweeper.tasks.REGISTRY`), an installed plugin, a
    user's function or a command (`sweeper.tasks.resolve`).

    A task may also have a pydantic model of its parameters, as ``Params`` (built-in tasks:
    every field has a default, unknown keys forbidden) or ``params_model`` (user tasks, None
    when the parameters are checked by type only); see `params_model`.
    """

    @property
    def name(self) -> str:
        """How studies and messages name the task."""
        ...

    @property
    def supports_batching(self) -> bool:
        """Whether `run` can train a group of more than one trial as one batched model."""
        ...

    @property
    def metrics(self) -> tuple[str, ...]:
        """The final metrics the task reports (a study's `metric` must be one of them); empty
        when they are known only once a trial returns them (user tasks)."""
        ...

    # Optional, for pruning: ``validation_curve`` names the per-epoch curve the task reports
    # through `RunContext.should_prune`, and ``pruning_problem(fixed) -> str | None`` says why
    # a study's fixed parameters leave nothing to prune on (e.g. no validation split).
    # ``prunes_in_groups = True``: `run` can stop one member of a batched group, so a pruned
    # study still batches (`sweeper.launch.modes.batching`); without it, it trains per trial.
    # Optional, for balancing batched groups: ``group_cost(group_key) -> float``, the relative
    # cost of one trial of a group; workers then claim the costliest parts first.

    def group_key(self, params: Mapping[str, Any]) -> str:
        """Trials with equal group keys may be trained together as one batched model."""
        ...

    def member_bytes(self, params: Mapping[str, Any]) -> int:
        """Memory one trial with `params` needs as a member of a batched group (an estimate)."""
        ...

    def check_data(self, params: Mapping[str, Any], data_dir: Path) -> None:
        """Make sure the dataset is present (downloading it if allowed).

        Raises:
            DataError: the dataset is missing and cannot be fetched, or fails verification.
        """
        ...

    def run(self, trials: Sequence[TrialInput], ctx: RunContext) -> Iterator[TrialOutcome]:
        """Train `trials` (all with the same group key) and yield one outcome per trial."""
        ...


def params_model(task: Task) -> type[BaseModel] | None:
    """The task's pydantic model of its parameters (``Params`` or ``params_model``), or None."""
    model: type[BaseModel] | None = getattr(task, "params_model", None) or getattr(
        task, "Params", None
    )
    return model
