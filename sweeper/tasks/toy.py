"""A toy task: a noisy quadratic with optional sleeps and failures, for tests and benchmarks.

It trains nothing, so the orchestrator (claim, record, resume) can be tested in milliseconds.
If ``SWEEPER_TOY_LOG`` names a file, every finished execution appends ``<key> <pid> <data dir>``
to it, so tests can prove that no trial ran twice (and where its worker looked for data).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from sweeper.canonical import canonical_json
from sweeper.seeds import derive_seed
from sweeper.tasks.base import RunContext, TrialInput, TrialOutcome
from sweeper.tasks.common import TaskParams


class ToyParams(TaskParams):
    x: float = 0.0
    y: float = 0.0
    epochs: int = Field(3, ge=1, le=100_000)
    sleep: float = Field(0.0, ge=0, le=3600)  # seconds per epoch, to make trials last
    fail: bool = False  # raise inside the trial, to test failures


class ToyTask:
    name: ClassVar[str] = "toy"
    Params: ClassVar[type[BaseModel]] = ToyParams
    supports_batching: ClassVar[bool] = True
    metrics: ClassVar[tuple[str, ...]] = ("loss", "final_epoch")
    #: the loss curve doubles as the validation value a pruner judges.
    validation_curve: ClassVar[str] = "train_loss"

    def pruning_problem(self, fixed: Mapping[str, Any]) -> str | None:
        return None

    def group_key(self, params: Mapping[str, Any]) -> str:
        return canonical_json({k: v for k, v in params.items() if k not in ("x", "y")})

    def member_bytes(self, params: Mapping[str, Any]) -> int:
        return 1024

    def check_data(self, params: Mapping[str, Any], data_dir: Path) -> None:
        return None

    def run(self, trials: Sequence[TrialInput], ctx: RunContext) -> Iterator[TrialOutcome]:
        for trial in trials:
            p = ToyParams.model_validate(dict(trial.params))
            noise = derive_seed(trial.seed, "toy") / 2**32
            target = (p.x - 1.0) ** 2 + (p.y + 2.0) ** 2 + 0.01 * noise
            curve: list[float] = []
            pruned = False
            for epoch in range(p.epochs):
                if p.sleep:
                    time.sleep(p.sleep)
                ctx.heartbeat()
                curve.append(target + 1.0 / (epoch + 1))
                if p.fail and epoch == p.epochs - 1:
                    raise RuntimeError(f"toy failure requested (x={p.x})")
                if ctx.should_prune(trial.trial_id, epoch + 1, curve[-1]):
                    pruned = True
                    break
            log = os.environ.get("SWEEPER_TOY_LOG")
            if log:
                with open(log, "a", encoding="utf-8") as f:  # one short O_APPEND write
                    f.write(f"{trial.key} {os.getpid()} {ctx.data_dir}\n")
            yield TrialOutcome(
                trial.trial_id,
                metrics={"loss": curve[-1], "final_epoch": float(len(curve))},
                curves={"train_loss": curve},
                pruned=pruned,
            )
