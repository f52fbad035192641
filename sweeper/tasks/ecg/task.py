"""`EcgTask`: the ECG task as the worker sees it (validation, group keys, running)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from sweeper.checkpoints import source_hash
from sweeper.errors import TrialDiverged
from sweeper.tasks.base import RunContext, TrialInput, TrialOutcome
from sweeper.tasks.common import shared_key, validate_params
from sweeper.tasks.ecg.data import load_data
from sweeper.tasks.ecg.params import EcgParams
from sweeper.tasks.ecg.train import train_one


class EcgTask:
    """The ECG task (see `sweeper.tasks.ecg`); registered as "ecg"."""

    name: ClassVar[str] = "ecg"
    Params: ClassVar[type[BaseModel]] = EcgParams
    # A group of one model per trial; ECG models are too large to stack usefully on a CPU.
    supports_batching: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = (
        "macro_f1",
        "macro_f1_present",
        "challenge_score",
        "macro_auroc",
        "age_mae",
        "source_f1",
        "train_loss",
    )

    def group_key(self, params: Mapping[str, Any]) -> str:
        """Every trial is its own group (no batching); validates cross-field rules.

        Raises:
            StudyFileError: `params` break a rule spanning fields (e.g. swa with t_max >= epochs).
        """
        return shared_key(validate_params(EcgParams, params))

    def member_bytes(self, params: Mapping[str, Any]) -> int:
        """Not batched; a rough per-trial size (parameters and Adam state, float32)."""
        p = EcgParams.model_validate(dict(params))
        return int(16.8e6 * (p.base_channels / 64) ** 2) * 4 * 4

    def check_data(self, params: Mapping[str, Any], data_dir: Path) -> None:
        """Check the dataset and decode it once into the cache, before any worker starts.

        Raises:
            MissingExtraError: wfdb is not installed (the message names ``sweeper[ecg]``).
            DataError: the dataset is missing (the message says how to get it) or unreadable.
        """
        from sweeper.tasks.ecg.loader import require_wfdb

        require_wfdb()  # before any worker starts, even when the decoded arrays are cached
        load_data(EcgParams.model_validate(dict(params)), data_dir)

    def run(self, trials: Sequence[TrialInput], ctx: RunContext) -> Iterator[TrialOutcome]:
        """Train the trials one at a time and yield each outcome as soon as it is done.

        A diverged trial yields an outcome with ``error="diverged: ..."``; other exceptions
        propagate for the worker to record. With ``ctx.checkpoints`` a trial resumes from its
        checkpoint and saves one as the policy says; it is removed once the outcome is
        recorded, or when the trial fails.
        """
        for trial in trials:
            p = EcgParams.model_validate(dict(trial.params))
            checkpoint = None
            if ctx.checkpoints is not None:
                here = Path(__file__).resolve().parent
                checkpoint = ctx.checkpoints.trial(trial.key, "ecg", source_hash(here))
            try:
                data = load_data(p, ctx.data_dir)
                result = train_one(
                    p,
                    trial.seed,
                    data,
                    device=ctx.device,
                    heartbeat=ctx.heartbeat,
                    checkpoint=checkpoint,
                )
            except TrialDiverged as exc:
                if checkpoint is not None:
                    checkpoint.remove()
                yield TrialOutcome(trial_id=trial.trial_id, error=str(exc))
                continue
            except Exception:
                if checkpoint is not None:
                    checkpoint.remove()  # a trial that fails keeps no checkpoint
                raise
            yield TrialOutcome(
                trial_id=trial.trial_id, metrics=result.metrics, curves=result.curves
            )
            if checkpoint is not None:
                checkpoint.remove()  # only now: the worker has recorded the outcome
