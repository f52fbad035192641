"""`ModelTask`: a study's trials of a `ModelSpec`, per trial or as batched groups.

A study names the spec like a function (``task = "model.py:spec"``); `as_model_task` turns the
loaded `FunctionTask` into a `ModelTask` when its target is a `ModelSpec`. A group of one, or a
per-trial run, goes through the function task (``spec(params, seed, trial)``: curves, pruning,
failure reasons as for any user function); a larger group trains as one batched model, or,
when its model cannot be batched, one trial at a time after one warning line saying why.

Model tasks checkpoint on their own (``ctx.checkpoints``): a per-trial run through its
`sweeper.Trial`, a batched group one file per member (`sweeper.tasks.model.checkpoints`); a
trial killed mid-training resumes where it saved, bit for bit.

A batched group is pruned as a per-trial run is: after each epoch every member reports its
curve values through its own `sweeper.Trial` (the pruner sees the same data either way), and a
member the pruner stops leaves the group (`sweeper.tasks.model.batched`) and is yielded at
once as pruned, with its curves so far; the others go on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sweeper.tasks.base import RunContext, Task, TrialInput, TrialOutcome
from sweeper.tasks.function import FunctionTask
from sweeper.tasks.model.batchable import NotBatchable
from sweeper.tasks.model.batched import run_batched
from sweeper.tasks.model.checkpoints import model_code
from sweeper.tasks.model.hyper import group_key, train_params
from sweeper.tasks.model.result import ModelResult
from sweeper.tasks.model.spec import ModelSpec
from sweeper.trial import Trial, TrialPruned, check_metrics

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
    #: a pruner can stop one member of a batched group (`sweeper.launch.modes.batching`).
    prunes_in_groups: ClassVar[bool] = True
    #: the devices it trains on (`sweeper.launch.limits.check_device`): the loop, the batched
    #: paths and the checkpoints are written and tested for the CPU.
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    metrics: tuple[str, ...] = ()

    def __init__(self, function: FunctionTask, spec: ModelSpec) -> None:
        self.function, self.spec = function, spec
        # A per-trial run of the spec checkpoints its training state through its `Trial`.
        function.checkpoint_kind = f"model/per-trial/{spec.dtype}"
        function.checkpoint_code = model_code(spec)
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
        several, else one by one; yields one outcome per trial as soon as it ends (a pruned or
        diverged member after its epoch, the others after the last)."""
        if not ctx.batched or len(trials) < 2:
            yield from self.function.run(trials, ctx)
            return
        group = _Judged(trials, ctx, self)
        members = [(dict(t.params), t.seed) for t in trials]
        results = run_batched(
            self.spec,
            members,
            heartbeat=ctx.heartbeat,
            judge=group.judge,
            checkpoints=ctx.checkpoints,
            keys=[t.key for t in trials],
            resumed=group.resume,
        )
        done: set[int] = set()
        while True:
            try:
                item = next(results, None)
            except NotBatchable as exc:
                logger.warning("%s: training %d trials one by one: %s", self.name, len(trials), exc)
                break
            except Exception as exc:  # noqa: BLE001 - the per-trial runs report each trial's error
                reason = (str(exc).strip().splitlines() or [""])[0]
                logger.warning(
                    "%s: the batched group failed (%s: %s); training %d trials one by one",
                    self.name, type(exc).__name__, reason, len(trials) - len(done),
                )  # fmt: skip
                break
            if item is None:
                return
            i, result = item
            done.add(i)
            yield group.stopped[i] if result is None else self._outcome(trials[i], result)
        # The group could not go on: the members not yet ended start again, one by one.
        rest = [t for i, t in enumerate(trials) if i not in done]
        yield from self.function.run(rest, ctx)

    def _outcome(self, trial: TrialInput, result: ModelResult | str) -> TrialOutcome:
        if isinstance(result, str):
            return TrialOutcome(trial.trial_id, error=result)
        try:
            metrics = check_metrics(result.metrics, self.function.metric)
        except ValueError as exc:
            return TrialOutcome(trial.trial_id, curves=result.curves, error=str(exc))
        return TrialOutcome(trial.trial_id, metrics=metrics, curves=result.curves)


class _Judged:
    """A batched group's members as the pruner sees them: one `sweeper.Trial` each, told every
    epoch's curve values exactly as a per-trial run tells its own."""

    def __init__(self, trials: Sequence[TrialInput], ctx: RunContext, task: ModelTask) -> None:
        self.trials = trials
        self.should_prune = ctx.should_prune
        self.replaying = False
        self.handles = [
            Trial(
                t.trial_id,
                t.seed,
                t.params,
                data_dir=ctx.data_dir,
                dir=task.function.trials_dir / t.key,
                device=ctx.device,
                heartbeat=ctx.heartbeat,
                should_prune=self._should_prune,
                prune_curve=task.validation_curve,
            )
            for t in trials
        ]
        # Seeds of one configuration share their parameters.
        self.config = [json.dumps(dict(t.params), sort_keys=True) for t in trials]
        #: member index -> its outcome, once the judge stopped it.
        self.stopped: dict[int, TrialOutcome] = {}

    def _should_prune(self, trial_id: int, position: int, value: float) -> bool:
        return not self.replaying and self.should_prune(trial_id, position, value)

    def resume(self, i: int, curves: Mapping[str, list[float]]) -> None:
        """Member `i` resumes from its checkpoint with `curves`: tell its `sweeper.Trial` the
        epochs it reported before the kill again (the pruner judged them then; not again)."""
        epochs = max((len(values) for values in curves.values()), default=0)
        self.replaying = True
        try:
            for e in range(epochs):
                point = {k: v[e] for k, v in curves.items() if e < len(v)}
                self.handles[i].report(e + 1, **point)
        finally:
            self.replaying = False

    def judge(self, epoch: int, values: Mapping[int, dict[str, float]]) -> list[int]:
        """Report `epoch` for each member in `values`; the members that stop (`run_batched`'s
        judge): those the pruner stops, those whose values `Trial.report` refuses (NaN: they
        fail, as per trial), and the other seeds of a configuration pruned now (a
        configuration is pruned as a whole, `sweeper.search.summarize`; per trial its queued
        seeds are dropped too)."""
        now: list[int] = []
        for i, point in values.items():
            trial, trial_id = self.handles[i], self.trials[i].trial_id
            try:
                trial.report(epoch, **point)
            except TrialPruned:
                self.stopped[i] = self._pruned(i)
                now.append(i)
            except (TypeError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                self.stopped[i] = TrialOutcome(trial_id, curves=trial.curves, error=error)
                now.append(i)
        pruned = {self.config[i] for i in now if self.stopped[i].pruned}
        for i in values:
            if i not in self.stopped and self.config[i] in pruned:
                self.stopped[i] = self._pruned(i)
                now.append(i)
        return now

    def _pruned(self, i: int) -> TrialOutcome:
        trial = self.handles[i]
        return TrialOutcome(
            self.trials[i].trial_id, metrics=trial.last_values(), curves=trial.curves, pruned=True
        )
