"""The optimizer registry: name -> one entry serving the per-trial and the batched path.

A new optimizer is one module (its torch class, its keyword arguments, its element-wise batched
update) and one line in `REGISTRY`; the tasks' parameter models take their allowed names from
here (`OptimizerName`), `sweeper.optim.per_trial.make_optimizer` builds it (wrapped in SAM when
asked) and `sweeper.optim.batched.BatchedOptimizer` steps a stacked group with it. Importing
this module does not import torch (parsing a study file needs the names only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sweeper.errors import UnknownNameError
from sweeper.optim import adam, sgd

if TYPE_CHECKING:
    import torch


class BatchedUpdate(Protocol):
    """An optimizer's update over a stacked group's parameter buffer, one member per row.

    Built as ``batched(flat, weight_decay, momentum)`` with the per-member values as columns
    broadcasting against `flat`; `step` changes `flat` in place, exactly as the torch optimizer
    would each member's parameters.
    """

    def step(self, grad: torch.Tensor, lr: torch.Tensor) -> None:
        """One step with gradient `grad` (laid out like `flat`) and learning rates `lr`."""
        ...

    def state(self) -> dict[str, torch.Tensor]:
        """The update's state (for checkpoints): tensors laid out like `flat`, or 0-d."""
        ...

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a `state` of an update over a `flat` of the same shape."""
        ...


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer, for both paths.

    Attributes:
        name: the name a study uses.
        torch_class: returns the ``torch.optim`` class (imported on call).
        kwargs: ``(lr, weight_decay, momentum, fused_ok) -> keyword arguments`` of that class;
            raises ValueError for values the optimizer cannot take.
        batched: ``(flat, weight_decay, momentum) -> BatchedUpdate``: the same update
            element-wise over a stacked group (momentum may be None: all zero).
        takes_momentum: whether a non-zero ``momentum`` parameter means anything to it.
    """

    name: str
    torch_class: Callable[[], type[torch.optim.Optimizer]]
    kwargs: Callable[[float, float, float, bool], dict[str, Any]]
    batched: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], BatchedUpdate]
    takes_momentum: bool


# name -> entry; the order is the order a study file's error lists the names in.
REGISTRY: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry("sgd", sgd.torch_class, sgd.kwargs, sgd.BatchedSGD, True),
    "adam": OptimizerEntry("adam", adam.torch_class, adam.kwargs, adam.BatchedAdam, False),
}

#: the optimizer names a study may use, sorted.
OPTIMIZERS: tuple[str, ...] = tuple(sorted(REGISTRY))

if TYPE_CHECKING:
    OptimizerName = str
else:
    # A Literal built from the registry: pydantic checks a study's value against it, and the
    # study file's error lists the names ("must be 'sgd' or 'adam'").
    OptimizerName = Literal[tuple(REGISTRY)]


def get_optimizer(name: str) -> OptimizerEntry:
    """Return the optimizer registered as `name`.

    Raises:
        UnknownNameError: no optimizer of that name; the message lists the valid names, e.g.
            ``unknown optimizer 'rmsprop'; choose one of: adam, sgd``.
    """
    entry = REGISTRY.get(name)
    if entry is None:
        raise UnknownNameError(
            f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}"
        )
    return entry


def with_momentum() -> tuple[str, ...]:
    """The names of the optimizers that take a momentum, in registry order."""
    return tuple(name for name, entry in REGISTRY.items() if entry.takes_momentum)
