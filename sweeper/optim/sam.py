"""SAM (sharpness-aware minimization) for both paths: around a torch optimizer, and batched.

`SAM` wraps any registered optimizer in a per-trial run (`sweeper.optim.per_trial`); it
follows David Samuel's reference implementation (github.com/davda54/sam, MIT), non-adaptive
variant. `sam_ascent` is the same first step for a stacked group, one norm per member.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

# Imported at module top, unlike elsewhere in sweeper: `SAM` subclasses `torch.optim.Optimizer`, so
# the class cannot exist without it. Only training code imports this module.
import torch

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT


class SAM(torch.optim.Optimizer):
    """Sharpness-aware minimization around a base optimizer (Foret et al., 2021).

    A step is two passes over the same batch, written out by the caller::

        loss_fn(model(x), y).backward()      # gradient g at w
        sam.first_step(zero_grad=True)       # w -> w + e, e = rho * g / ||g||
        loss_fn(model(x), y).backward()      # gradient at w + e
        sam.second_step(zero_grad=True)      # back to w, base step with that gradient

    The base optimizer shares SAM's parameter groups, so its learning rate, weight decay and
    moments apply at w; wrap a learning-rate scheduler around `base_optimizer`, because the base
    optimizer is the one whose ``step`` runs.

    Args:
        params: parameters or parameter groups; a group may set its own ``rho``.
        base_optimizer: optimizer class, e.g. ``torch.optim.SGD``.
        rho: radius of the neighbourhood, the default for groups that set none.
        **kwargs: passed to `base_optimizer` (``lr``, ``weight_decay``, ...).

    Raises:
        ValueError: `rho` is negative.
    """

    def __init__(
        self,
        params: ParamsT,
        base_optimizer: Callable[..., torch.optim.Optimizer],
        rho: float = 0.05,
        **kwargs: Any,
    ) -> None:
        if rho < 0.0:
            raise ValueError(f"SAM rho must be >= 0 (got {rho})")
        super().__init__(params, dict(rho=rho, **kwargs))
        # The base optimizer adopts SAM's group dicts, so a change to a group's lr (by a
        # scheduler, say) is seen by both.
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Save w and move to ``w + e`` with ``e = rho * g / (||g|| + 1e-12)``.

        ``||g||`` is one L2 norm over the gradients of all parameters in all groups; each group
        scales by its own ``rho``. Parameters without a gradient are left alone.
        """
        grad_norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.detach().clone()
                p.add_(p.grad * scale.to(p))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore the w saved by `first_step`, then take the base step with the current gradient.

        Call it after a backward pass at ``w + e``: that gradient is what the base optimizer
        applies, at w.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                # Copy back rather than subtract e, so w is restored bit for bit.
                p.copy_(self.state[p]["old_p"])
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    # torch declares `step` with these two overloads; SAM accepts only the second.
    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], float]) -> float: ...
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Both SAM steps in one call, as in the reference implementation.

        Call it after a backward pass at w; `closure` must compute the loss and call backward
        (it runs at ``w + e``, with gradients enabled). Gradients are left as the closure made
        them.

        Returns:
            The closure's loss at ``w + e``.

        Raises:
            ValueError: no closure was given (SAM needs a second gradient evaluation).
        """
        if closure is None:
            raise ValueError("SAM.step needs a closure that computes the loss and its gradient")
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def _grad_norm(self) -> torch.Tensor:
        """One L2 norm over every gradient, on the device of the first parameter."""
        device = self.param_groups[0]["params"][0].device
        norms = [
            p.grad.norm(p=2).to(device)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not norms:
            return torch.zeros((), device=device)
        norm: torch.Tensor = torch.linalg.vector_norm(torch.stack(norms), ord=2)
        return norm

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load state and keep the base optimizer on the same group dicts."""
        super().load_state_dict(state_dict)
        self.base_optimizer.param_groups = self.param_groups


def sam_ascent(grad: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """SAM's first step for a stacked group: ``e = rho * g / (||g|| + 1e-12)``, per member.

    One L2 norm per member (row), as `SAM.first_step` takes one over a model's parameters.

    Args:
        grad: gradients at w, laid out like a stacked net's `flat` (parameters at dim 1).
        rho: neighbourhood sizes, the net's `column` (0: no perturbation).
    Returns:
        ``e`` laid out like `grad`, to add to the weights before the second gradient.
    """
    norm = grad.norm(dim=1, keepdim=True)
    ascent: torch.Tensor = grad * (rho / (norm + 1e-12))
    return ascent
