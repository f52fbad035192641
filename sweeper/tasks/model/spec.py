"""`ModelSpec`: a model task described as a model, its data, loss and metrics.

The user writes what differs between models; sweeper owns the training loop (optimizer, SAM,
epochs, batch size, schedule, seeds, curves, pruning) and trains trials whose user parameters,
optimizer, epochs and batch size agree as one batched model (`sweeper.tasks.model.batched`)::

    # model.py, named in a study as  task = "model.py:spec"
    from sweeper.tasks.model import ModelSpec, accuracy

    def build(params):
        return nn.Sequential(nn.Linear(8, params["width"]), nn.ReLU(),
                             nn.Linear(params["width"], 3))

    spec = ModelSpec(build=build, data=load, loss="cross_entropy",
                     metrics={"accuracy": accuracy})

A spec is also callable as ``spec(params, seed, trial)``, the signature of a user's function
task: a per-trial run reporting its curves through the `sweeper.Trial`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sweeper.errors import SweeperError
from sweeper.seeds import derive_seed
from sweeper.tasks.model.data import Splits, as_splits
from sweeper.tasks.model.hyper import INIT_SEED
from sweeper.tasks.model.losses import LOSSES, Loss, Metric, get_loss

if TYPE_CHECKING:
    import torch

    from sweeper.trial import Trial


class ModelSpecError(SweeperError):
    """A `ModelSpec` is malformed; the message lists every problem."""


@dataclass(frozen=True)
class ModelSpec:
    """A model task.

    Attributes:
        build: ``build(params) -> torch.nn.Module``, reading the user's parameters (those not
            in `sweeper.tasks.model.hyper.TRAIN_KEYS`). Called with the global torch RNG
            seeded from the trial's seed, so its initial weights are the trial's own.
        data: the splits (see `sweeper.tasks.model.data`), or ``data(params)`` returning them.
            A batched group calls it once for all its members: it must not depend on the
            learning rate, weight decay, momentum or SAM rho.
        loss: ``"mse"``, ``"cross_entropy"``, or ``loss(pred, target) -> scalar tensor``.
        metrics: name -> ``metric(pred, target) -> float``, reported per split.
        dtype: ``"float32"`` or ``"float64"`` (the model's parameters and float data).
    """

    build: Callable[[dict[str, Any]], torch.nn.Module]
    data: Any
    loss: str | Loss = "mse"
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    dtype: Literal["float32", "float64"] = "float32"

    def __post_init__(self) -> None:
        problems = []
        if not callable(self.build):
            problems.append(f"build must be callable (got {type(self.build).__name__})")
        if not callable(self.loss) and self.loss not in LOSSES:
            problems.append(
                f"unknown loss {self.loss!r}; choose one of: {', '.join(sorted(LOSSES))}"
            )
        if self.dtype not in ("float32", "float64"):
            problems.append(f"dtype must be 'float32' or 'float64' (got {self.dtype!r})")
        bad = sorted(k for k, m in self.metrics.items() if not callable(m))
        if bad:
            problems.append(f"metrics {bad} are not callable")
        if problems:
            raise ModelSpecError("ModelSpec: " + "; ".join(problems))

    @property
    def torch_dtype(self) -> torch.dtype:
        """The spec's dtype as a ``torch.dtype``."""
        import torch

        dtype: torch.dtype = getattr(torch, self.dtype)
        return dtype

    def loss_fn(self) -> Loss:
        """The loss as a callable."""
        return get_loss(self.loss)

    def splits(self, params: Mapping[str, Any]) -> Splits:
        """The data for `params`, as tensors of the spec's dtype.

        Raises:
            ModelDataError: the data is in no form sweeper understands.
        """
        value = self.data(dict(params)) if callable(self.data) else self.data
        return as_splits(value, self.torch_dtype)

    def model(self, params: Mapping[str, Any], seed: int) -> torch.nn.Module:
        """``build(params)`` with the torch RNG seeded from `seed` (restored afterwards), cast
        to the spec's dtype: the same initial weights on both paths."""
        import torch

        with torch.random.fork_rng(devices=[]):
            # The CPU generator only (where modules initialise their weights): torch.manual_seed
            # also seeds every accelerator backend, which cost 2 ms a model (measured).
            torch.default_generator.manual_seed(derive_seed(seed, *INIT_SEED))
            module = self.build(dict(params))
        if not isinstance(module, torch.nn.Module):
            raise ModelSpecError(f"build returned a {type(module).__name__}, not a torch.nn.Module")
        return module.to(self.torch_dtype)

    def __call__(self, params: dict[str, Any], seed: int, trial: Trial) -> dict[str, float]:
        """Train one trial (the user-function signature): its final metrics; curves go to
        ``trial.report``, which may stop the run with `sweeper.TrialPruned`; the training state
        goes to ``trial.checkpoint`` and comes back from ``trial.restore`` after a kill."""
        from sweeper.tasks.model.per_trial import train_per_trial

        return train_per_trial(self, params, seed, report=trial.report, checkpoint=trial).metrics
