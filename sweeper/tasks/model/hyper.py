"""The training hyperparameters sweeper owns in a model task, read from a trial's parameters.

Every other parameter is the user's (``build`` reads it: widths, kernel sizes, ...). Members of
one batched group may differ in `VARY` (and in their seed); everything else, the user's
parameters included, must agree, which `group_key` encodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sweeper.canonical import canonical_json
from sweeper.tasks.common import validate_params
from sweeper.tasks.model.optimizers import OPTIMIZERS, takes_momentum

#: what members of one batched group may differ in (each is a per-member column there).
VARY: tuple[str, ...] = ("lr", "weight_decay", "momentum", "sam_rho")

#: the seed spellings stored results depend on (`sweeper.seeds.derive_seed`): a trial's
#: initial weights and its batch order.
INIT_SEED: tuple[str, str] = ("init", "model")
BATCH_SEED: tuple[str, str] = ("batches", "model")

#: the schedules a model task knows: "none" (constant lr) or "cosine" (``CosineAnnealingLR``
#: with ``T_max = epochs``, stepped once per epoch).
SCHEDULES: tuple[str, ...] = ("cosine", "none")


class TrainParams(BaseModel):
    """The training loop's hyperparameters, each with its default; other keys are ignored here
    (they are the model's)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    optimizer: str = "sgd"
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    sam_rho: float = Field(0.0, ge=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    schedule: Literal["none", "cosine"] = "none"

    @model_validator(mode="after")
    def _known(self) -> TrainParams:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"
            )
        if self.momentum != 0.0 and not takes_momentum(self.optimizer):
            raise ValueError(
                f"momentum applies to sgd only (got {self.momentum} with {self.optimizer})"
            )
        return self


#: the names `TrainParams` reads from a trial's parameters.
TRAIN_KEYS: frozenset[str] = frozenset(TrainParams.model_fields)


def train_params(params: Mapping[str, Any]) -> TrainParams:
    """The loop's hyperparameters in `params`, defaults filled in.

    Raises:
        StudyFileError: every bad value at once (``parameters {...}: <what is wrong>``), as
            `sweeper.tasks.common.validate_params` words it.
    """
    return validate_params(TrainParams, params)


def group_key(params: Mapping[str, Any]) -> str:
    """Canonical JSON of what a batched group's members share: the user's parameters, the
    optimizer, epochs, batch size, schedule, and whether SAM is on (SAM costs a second
    gradient, which members without it should not pay).

    Raises:
        StudyFileError: see `train_params`.
    """
    hyper = train_params(params)
    shared: dict[str, Any] = {k: v for k, v in params.items() if k not in TRAIN_KEYS}
    shared.update(hyper.model_dump(exclude=set(VARY)))
    shared["sam"] = hyper.sam_rho > 0
    return canonical_json(shared)
