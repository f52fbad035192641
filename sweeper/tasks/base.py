"""The contract between the worker and a task.

A task trains *groups* of trials: the per-trial executor hands it groups of one, the batched
executor groups of many compatible trials (those with equal `group_key`). A task yields one
`TrialOutcome` per trial as soon as that trial is finished, so the worker can record it at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from pydantic import BaseModel


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
    those of that moment (stored, but never the trial's value).
    """

    trial_id: int
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None
    pruned: bool = False


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
    """

    data_dir: Path
    device: str = "cpu"
    batched: bool = False
    heartbeat: Callable[[], None] = lambda: None
    should_prune: Callable[[int, int, float], bool] = lambda trial_id, epoch, value: False


class Task(Protocol):
    """A trainable task, registered by name in `sweeper.tasks.REGISTRY`."""

    name: ClassVar[str]
    #: pydantic model of the task's parameters: every field has a default, unknown keys forbidden.
    Params: ClassVar[type[BaseModel]]
    #: whether `run` can train a group of more than one trial as a single batched model.
    supports_batching: ClassVar[bool]
    #: names of the final metrics the task reports (a study's `metric` must be one of them).
    metrics: ClassVar[tuple[str, ...]]

    # Optional, for pruning: ``validation_curve: ClassVar[str]`` names the per-epoch curve the
    # task reports through `RunContext.should_prune`, and ``pruning_problem(fixed) -> str | None``
    # says why a study's fixed parameters leave nothing to prune on (e.g. no validation split).

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
