"""`ObesityTask`: the obesity task as the worker sees it (validation, group keys, running)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from sweeper.errors import TrialDiverged
from sweeper.tasks.base import RunContext, TrialInput, TrialOutcome
from sweeper.tasks.common import shared_key, validate_params
from sweeper.tasks.obesity.data import dataset_path, load_encoded, load_split
from sweeper.tasks.obesity.params import ObesityParams
from sweeper.tasks.obesity.train import train_one

if TYPE_CHECKING:
    from sweeper.checkpoints import CheckpointPolicy, TrialCheckpoint


class ObesityTask:
    """The obesity task (see `sweeper.tasks.obesity`); registered as "obesity"."""

    name: ClassVar[str] = "obesity"
    Params: ClassVar[type[BaseModel]] = ObesityParams
    # `run` trains a group as one stacked model when the context allows (see `batched`).
    supports_batching: ClassVar[bool] = True
    #: val_mse only when val_fraction > 0.
    metrics: ClassVar[tuple[str, ...]] = ("test_mse", "train_mse", "val_mse")
    #: the per-epoch value a pruner judges (needs a validation split).
    validation_curve: ClassVar[str] = "val_mse"

    def pruning_problem(self, fixed: Mapping[str, Any]) -> str | None:
        """Pruning needs a validation split: never prune on the test set."""
        if float(fixed.get("val_fraction", 0.0)) <= 0:
            return (
                "pruning needs a validation split to judge epochs on (never the test set): "
                "set fixed.val_fraction, e.g. 0.15"
            )
        return None

    def group_key(self, params: Mapping[str, Any]) -> str:
        """Canonical JSON of the parameters a batched group must share.

        Members of a group may differ only in lr, weight_decay, sam_rho (all > 0 or all 0),
        momentum and seed; every other parameter, with defaults filled in, is in the key.

        Raises:
            StudyFileError: `params` break a rule that spans fields (the study file's per-field
                checks cannot see it), e.g. momentum with adam; one problem per broken rule.
        """
        p = validate_params(ObesityParams, params)
        return shared_key(p, vary=("lr", "weight_decay", "sam_rho", "momentum"), sam=p.sam_rho > 0)

    def group_cost(self, group_key: str) -> float:
        """The relative cost of one trial of the group `group_key` (a `group_key` result):
        mini-batch passes, i.e. epochs times two with SAM (its two gradients per step) times
        mini-batches per epoch; workers claim the costliest groups first."""
        shared = json.loads(group_key)
        p = ObesityParams.model_validate(
            {k: v for k, v in shared.items() if k in ObesityParams.model_fields}
        )
        sam = bool(shared.get("sam", False))
        rows = int(p.train_fraction * (1 - p.val_fraction) * 2111)  # the UCI file's rows
        passes = (2 * p.sam_epochs) if sam else p.epochs
        return float(passes * -(-rows // p.batch_size))

    def check_data(self, params: Mapping[str, Any], data_dir: Path) -> None:
        """Fetch and verify the CSV, and encode it once so a bad file fails before any worker.

        Raises:
            DataError: the dataset is missing and cannot be fetched, fails its checksum, or holds
                values the encoding does not know.
        """
        load_encoded(dataset_path(data_dir))

    def member_bytes(self, params: Mapping[str, Any]) -> int:
        """Memory one member of a batched group needs (an over-estimate)."""
        from sweeper.tasks.obesity.batched import member_bytes

        p = ObesityParams.model_validate(dict(params))
        # The UCI file has 2,111 rows; the estimate needs no reading of it.
        return member_bytes(p, n_train=int(p.train_fraction * 2111))

    def run(self, trials: Sequence[TrialInput], ctx: RunContext) -> Iterator[TrialOutcome]:
        """Train the trials and yield each outcome as soon as it is done.

        With ``ctx.batched`` the group (even of one: a leftover trial is then computed the way
        its group was, and the C kernel makes that faster than a plain loop) is trained as one
        stacked model (`sweeper.tasks.obesity.batched`): a diverged member's outcome comes at
        once, the others' when the group ends; otherwise one trial at a time. A diverged trial
        yields an outcome with ``error="diverged: ..."``; other exceptions propagate for the
        worker to record. With ``ctx.checkpoints`` every trial (or member) resumes from its
        checkpoint and saves one as the policy says; it is removed once the outcome is
        recorded, or when the trial fails.

        Raises:
            DataError: the dataset is missing or invalid.
            pydantic.ValidationError: a trial's parameters are invalid.
        """
        params = [ObesityParams.model_validate(dict(t.params)) for t in trials]
        if ctx.batched:
            from sweeper.tasks.obesity.batched import train_group_iter

            data = load_split(params[0], ctx.data_dir)
            members = [(p, t.seed) for p, t in zip(params, trials, strict=True)]
            results = train_group_iter(
                members,
                data,
                device=ctx.device,
                heartbeat=ctx.heartbeat,
                checkpoints=ctx.checkpoints,
                keys=[t.key for t in trials],
            )
            for i, result in results:
                trial_id = trials[i].trial_id
                if isinstance(result, str):
                    yield TrialOutcome(trial_id=trial_id, error=result)
                else:
                    yield TrialOutcome(
                        trial_id=trial_id, metrics=result.metrics, curves=result.curves
                    )
            return
        for trial, p in zip(trials, params, strict=True):
            data = load_split(p, ctx.data_dir)
            trial_id = trial.trial_id

            def should_prune(epoch: int, value: float, trial_id: int = trial_id) -> bool:
                return ctx.should_prune(trial_id, epoch, value)

            checkpoint = _checkpoint(ctx.checkpoints, trial.key, p)
            try:
                result = train_one(
                    p,
                    trial.seed,
                    data,
                    device=ctx.device,
                    heartbeat=ctx.heartbeat,
                    should_prune=should_prune,
                    checkpoint=checkpoint,
                )
            except TrialDiverged as exc:
                if checkpoint is not None:
                    checkpoint.remove()
                yield TrialOutcome(trial_id=trial_id, error=str(exc))
                continue
            except Exception:
                if checkpoint is not None:
                    checkpoint.remove()  # a trial that fails keeps no checkpoint
                raise
            yield TrialOutcome(
                trial_id=trial_id,
                metrics=result.metrics,
                curves=result.curves,
                pruned=result.pruned_at is not None,
            )
            if checkpoint is not None:
                checkpoint.remove()  # only now: the worker has recorded the outcome


def _checkpoint(
    policy: CheckpointPolicy | None, key: str, params: ObesityParams
) -> TrialCheckpoint | None:
    """A per-trial run's checkpoint (None when the run keeps none)."""
    if policy is None:
        return None
    from sweeper.checkpoints import source_hash

    here = Path(__file__).resolve().parent
    return policy.trial(
        key, f"obesity/{params.dtype}", source_hash(here, here.parents[1] / "optim")
    )
