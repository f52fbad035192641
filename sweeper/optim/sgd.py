"""SGD (``torch.optim.SGD``: momentum, dampening 0, no Nesterov, coupled weight decay)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def torch_class() -> type[torch.optim.Optimizer]:
    """``torch.optim.SGD``."""
    import torch

    return torch.optim.SGD


def kwargs(lr: float, weight_decay: float, momentum: float, fused: bool) -> dict[str, Any]:
    """Keyword arguments of ``torch.optim.SGD``."""
    del fused  # SGD's fused kernel gave no consistent gain on this model (timed 40 epochs)
    return dict(lr=lr, momentum=momentum, weight_decay=weight_decay)


class BatchedSGD:
    """``torch.optim.SGD`` step for step over a stacked `flat`, per-member columns.

    Args:
        flat: the group's parameters (changed in place by `step`).
        weight_decay: per-member L2 coefficients (a column broadcasting against `flat`).
        momentum: per-member momentum (a column), or None for none.
    """

    def __init__(
        self, flat: torch.Tensor, weight_decay: torch.Tensor, momentum: torch.Tensor | None
    ) -> None:
        self.flat, self.weight_decay, self.momentum = flat, weight_decay, momentum
        self.use_wd = bool((weight_decay != 0).any())
        self.use_momentum = momentum is not None and bool((momentum != 0).any())
        self.buf: torch.Tensor | None = None

    def step(self, grad: torch.Tensor, lr: torch.Tensor) -> None:
        """One step with gradient `grad` and learning rates `lr` (a column)."""
        g = grad + self.weight_decay * self.flat if self.use_wd else grad
        if self.use_momentum:
            assert self.momentum is not None
            if self.buf is None:
                self.buf = g.clone()
            else:
                self.buf.mul_(self.momentum).add_(g)
            g = self.buf
        self.flat.sub_(lr * g)

    def state(self) -> dict[str, torch.Tensor]:
        """The momentum buffer (laid out like `flat`; none before the first step with one)."""
        return {} if self.buf is None else {"buf": self.buf}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `state` (see `state`)."""
        buf = state.get("buf")
        self.buf = None if buf is None else buf.to(self.flat).clone()
