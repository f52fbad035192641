"""The obesity task's parameters: `ObesityParams`, whose defaults are the faithful protocol."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sweeper.optim.registry import OptimizerName, get_optimizer, with_momentum
from sweeper.tasks.common import TaskParams

#: upper bounds that only catch mistakes (a typo'd 2000000 epochs), never a real protocol: the
#: data set has 2,111 rows, so a batch beyond it is the full batch.
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 65_536


class ObesityParams(TaskParams):
    """Parameters of one obesity trial; the defaults are the faithful protocol."""

    #: a name in `sweeper.optim.registry.REGISTRY`.
    optimizer: OptimizerName = "adam"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    #: SAM radius; 0 trains without SAM.
    sam_rho: float = Field(default=0.0, ge=0)
    #: momentum, for the optimizers that take one (sgd); must stay 0 with the others (adam).
    momentum: float = Field(default=0.0, ge=0, lt=1)
    epochs: int = Field(default=200, ge=1, le=MAX_EPOCHS)
    #: epochs used instead of `epochs` when sam_rho > 0 (SAM costs two gradients per step).
    sam_epochs: int = Field(default=100, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(default=32, ge=1, le=MAX_BATCH_SIZE)
    schedule: Literal["constant", "cosine"] = "constant"
    cosine_t_max: int = Field(default=100, ge=1, le=MAX_EPOCHS)
    split_seed: int = Field(default=0, ge=0, lt=2**31)
    train_fraction: float = Field(default=0.8, gt=0, lt=1)
    #: fraction of the training rows held out for validation; 0 = none (the faithful protocol).
    val_fraction: float = Field(default=0.0, ge=0, lt=1)
    standardize: bool = False
    dtype: Literal["float32", "float64"] = "float32"

    @model_validator(mode="after")
    def _momentum_needs_an_optimizer_that_takes_it(self) -> ObesityParams:
        # Adam has no momentum argument; accepting one would silently run identical trials.
        name = self.optimizer
        if self.momentum != 0.0 and not get_optimizer(name).takes_momentum:
            raise ValueError(
                f"momentum applies to {' and '.join(with_momentum())} only (got {self.momentum} "
                f"with {name}); leave it at 0 for {name}"
            )
        return self

    @property
    def n_epochs(self) -> int:
        """Epochs this trial trains: `sam_epochs` with SAM, else `epochs`."""
        return self.sam_epochs if self.sam_rho > 0 else self.epochs
