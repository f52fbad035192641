"""`ModelTask`: a study's trials of a `ModelSpec`, per trial or as batched groups.

A study names the spec like a function (``task = "model.py:spec"``); `as_model_task` turns the
loaded `FunctionTask` into a `ModelTask` when its target is a `ModelSpec`. A group of one, or a
per-trial run, goes through the function task (``spec(params, seed, trial)``: curves, pruning,
failure reasons as for any user function); a larger group trains as one batched model, or,
when its model cannot be batched, one trial at a time after one warning line saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sweeper.tasks.base import RunContext, Task, TrialInput, TrialOutcome
from sweeper.tasks.function import FunctionTask
from sweeper.tasks.model.batchable import NotBatchable
from sweeper.tasks.model.batched import train_batched
from sweeper.tasks.model.hyper import group_key, train_params
from sweeper.tasks.model.result import ModelResult
from sweeper.tasks.model.spec import ModelSpec
from sweeper.trial import check_metrics

if TYPE_CHECKING:
    from pydantic import BaseModel

logger = logging.getLogger(__name__)


def as_model_task(task: FunctionTask) -> Task:
    """`task` as a `ModelTask` when its target is a `ModelSpec`, else `task` itself."""
    if isinstance(task.fn, ModelSpec):
        return ModelTask(task, task.fn)
    return task


class ModelTask:
    """A `ModelSpec` as a `sweeper.tasks.base.Task` that batches.

    Args:
        function: the spec loaded as a user function (name, metric, trial directories, pruning).
        spec: the spec itself (``function.fn``).
    """

    supports_batching: ClassVar[bool] = True
    metrics: tuple[str, ...] = ()

    def __init__(self, function: FunctionTask, spec: ModelSpec) -> None:
        self.function, self.spec = function, spec
        self.name = function.name
        self.validation_curve = function.validation_curve
        self.params_model: type[BaseModel] | None = function.params_model

    def pruning_problem(self, fixed: Mapping[str, Any]) -> str | None:
        return self.function.pruning_problem(fixed)

    def group_key(self, params: Mapping[str, Any]) -> str:
        """Trials whose user parameters, optimizer, epochs, batch size, schedule and SAM on/off
        agree (`sweeper.tasks.model.hyper.group_key`)."""
        return group_key(params)

    def member_bytes(self, params: Mapping[str, Any]) -> int:
        """Parameters, gradient, optimizer state and SAM's copy, plus a batch's inputs and
        activations (taken as 64 floats a row per parameter tensor: a rough guess)."""
        model = self.spec.model(params, 0)
        itemsize = 8 if self.spec.dtype == "float64" else 4
        weights = sum(p.numel() for p in model.parameters())
        batch = train_params(params).batch_size
        return itemsize * (6 * weights + 64 * batch * max(1, len(list(model.parameters()))))

    def check_data(self, params: Mapping[str, Any], data_dir: Path) -> None:
        return None

    def run(self, trials: Sequence[TrialInput], ctx: RunContext) -> Iterator[TrialOutcome]:
        """Train `trials` (one group key): batched when the context allows and there are
        several, else one by one; yields one outcome per trial."""
        if not ctx.batched or len(trials) < 2:
            yield from self.function.run(trials, ctx)
            return
        members = [(dict(t.params), t.seed) for t in trials]
        try:
            results = train_batched(self.spec, members, heartbeat=ctx.heartbeat)
        except NotBatchable as exc:
            logger.warning("%s: training %d trials one by one: %s", self.name, len(trials), exc)
            yield from self.function.run(trials, ctx)
            return
        except Exception as exc:  # noqa: BLE001 - the per-trial runs report each trial's error
            reason = (str(exc).strip().splitlines() or [""])[0]
            logger.warning(
                "%s: the batched group failed (%s: %s); training %d trials one by one",
                self.name, type(exc).__name__, reason, len(trials),
            )  # fmt: skip
            yield from self.function.run(trials, ctx)
            return
        for trial, result in zip(trials, results, strict=True):
            yield self._outcome(trial, result)

    def _outcome(self, trial: TrialInput, result: ModelResult | str) -> TrialOutcome:
        if isinstance(result, str):
            return TrialOutcome(trial.trial_id, error=result)
        try:
            metrics = check_metrics(result.metrics, self.function.metric)
        except ValueError as exc:
            return TrialOutcome(trial.trial_id, curves=result.curves, error=str(exc))
        return TrialOutcome(trial.trial_id, metrics=metrics, curves=result.curves)
