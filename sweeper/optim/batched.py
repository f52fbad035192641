"""The batched path: a registered optimizer stepping a stacked group, per-member hyperparameters.

A stacked net (e.g. `sweeper.tasks.obesity.stacked`) keeps all members' parameters in one
buffer `flat` with the parameter axis at dim 1, and per-member values as `column` s that
broadcast against it; an optimizer step is then a handful of element-wise operations on it,
the registry entry's `BatchedUpdate`, equal step for step to the torch optimizer of a per-trial
run. SAM's batched first step is `sweeper.optim.sam.sam_ascent`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sweeper.optim.registry import get_optimizer

if TYPE_CHECKING:
    import torch


class BatchedOptimizer:
    """The optimizer called `name` over a stacked net's `flat`, per-member lr and weight decay.

    `lr`, `weight_decay` and `momentum` are the net's `column` s. Matches the registry's torch
    optimizer step for step (``torch.optim.SGD(lr, momentum, weight_decay)``, dampening 0, no
    Nesterov; ``torch.optim.Adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay)``, coupled L2).
    `lr` may be changed between steps (schedules) by assigning a new column.

    Raises:
        UnknownNameError: `name` is not a registered optimizer; the message lists the names.
    """

    def __init__(
        self,
        name: str,
        flat: torch.Tensor,
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        momentum: torch.Tensor | None = None,
    ) -> None:
        self.name, self.flat, self.lr = name, flat, lr
        self._update = get_optimizer(name).batched(flat, weight_decay, momentum)

    def step(self, grad: torch.Tensor) -> None:
        """One step with gradient `grad` ``[M, P]`` (taken wherever SAM says), applied at `flat`."""
        self._update.step(grad, self.lr)

    def state(self) -> dict[str, torch.Tensor]:
        """The optimizer's state (for checkpoints): tensors laid out like `flat`, or 0-d."""
        return self._update.state()

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a `state` taken over a `flat` of the same shape."""
        self._update.load_state(state)
