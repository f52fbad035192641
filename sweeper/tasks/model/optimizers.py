"""The optimizers of a model task: sweeper's registry (sgd, adam) plus AdamW.

Each entry serves both paths as in `sweeper.optim.registry`: a ``torch.optim`` class with its
keyword arguments for a per-trial run (wrapped in `sweeper.optim.sam.SAM` when ``sam_rho`` >
0), and an element-wise update of a stacked group's ``flat [M, P]`` for the batched run.
AdamW lives here until it joins `sweeper.optim.registry.REGISTRY` (one line there).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sweeper.errors import UnknownNameError
from sweeper.optim.registry import REGISTRY, OptimizerEntry

if TYPE_CHECKING:
    import torch

    from sweeper.optim.registry import BatchedUpdate


def _adamw_class() -> type[torch.optim.Optimizer]:
    import torch

    return torch.optim.AdamW


def _adamw_kwargs(lr: float, weight_decay: float, momentum: float, fused: bool) -> dict[str, Any]:
    if momentum != 0.0:
        raise ValueError(f"momentum applies to sgd only (got {momentum} for adamw)")
    result: dict[str, Any] = dict(lr=lr, weight_decay=weight_decay)
    if fused:
        result["fused"] = True
    return result


class BatchedAdamW:
    """``torch.optim.AdamW`` (decoupled weight decay) step for step over a stacked `flat`.

    ``w <- w * (1 - lr * weight_decay)``, then Adam's step without weight decay, per member.
    """

    def __init__(
        self, flat: torch.Tensor, weight_decay: torch.Tensor, momentum: torch.Tensor | None
    ) -> None:
        import torch

        from sweeper.optim.adam import BatchedAdam

        self.flat, self.weight_decay = flat, weight_decay
        self.use_wd = bool((weight_decay != 0).any())
        self.adam = BatchedAdam(flat, torch.zeros_like(weight_decay), momentum)

    def step(self, grad: torch.Tensor, lr: torch.Tensor) -> None:
        """One step with gradient `grad` and learning rates `lr` (a column)."""
        if self.use_wd:
            # Decoupled: the decay scales w before the Adam step and never enters the moments.
            self.flat.mul_(1.0 - lr * self.weight_decay)
        self.adam.step(grad, lr)

    def state(self) -> dict[str, torch.Tensor]:
        """Adam's moments and step count."""
        return self.adam.state()

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `state` (see `state`)."""
        self.adam.load_state(state)


#: name -> entry: sweeper's optimizer registry, plus adamw.
TABLE: dict[str, OptimizerEntry] = {
    **REGISTRY,
    "adamw": OptimizerEntry("adamw", _adamw_class, _adamw_kwargs, BatchedAdamW, False),
}
#: the optimizer names a model task takes, sorted.
OPTIMIZERS: tuple[str, ...] = tuple(sorted(TABLE))


def get_entry(name: str) -> OptimizerEntry:
    """The entry called `name`.

    Raises:
        UnknownNameError: no such optimizer; the message lists the names.
    """
    entry = TABLE.get(name)
    if entry is None:
        raise UnknownNameError(
            f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}"
        )
    return entry


def takes_momentum(name: str) -> bool:
    """Whether a non-zero momentum means anything to optimizer `name` (False if unknown)."""
    entry = TABLE.get(name)
    return entry is not None and entry.takes_momentum


def make_optimizer(
    name: str,
    params: Iterable[torch.Tensor],
    lr: float,
    weight_decay: float,
    momentum: float,
    sam_rho: float,
) -> torch.optim.Optimizer:
    """The per-trial optimizer: the entry's torch class, wrapped in `SAM` when `sam_rho` > 0.

    Raises:
        UnknownNameError: see `get_entry`.
        ValueError: momentum with an optimizer that takes none.
    """
    from sweeper.optim.per_trial import optimizer_for

    return optimizer_for(get_entry(name), params, lr, weight_decay, momentum, sam_rho)


def batched_update(
    name: str, flat: torch.Tensor, weight_decay: torch.Tensor, momentum: torch.Tensor
) -> BatchedUpdate:
    """The batched update of optimizer `name` over `flat` ``[M, P]`` (columns ``[M, 1]``).

    Raises:
        UnknownNameError: see `get_entry`.
    """
    return get_entry(name).batched(flat, weight_decay, momentum)
