"""The per-trial path: a registered optimizer as a ``torch.optim`` optimizer, wrapped in SAM."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sweeper.optim.registry import OPTIMIZERS, OptimizerEntry, get_optimizer

if TYPE_CHECKING:
    import torch


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
        name: one of `OPTIMIZERS` (see `sweeper.optim.registry`).
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
    return optimizer_for(get_optimizer(name), params, lr, weight_decay, momentum, sam_rho)


def optimizer_for(
    entry: OptimizerEntry,
    params: Iterable[torch.Tensor],
    lr: float,
    weight_decay: float,
    momentum: float,
    sam_rho: float,
) -> torch.optim.Optimizer:
    """`make_optimizer` for a registry `entry` (also one outside `REGISTRY`, as model tasks'
    AdamW). Raises as `make_optimizer` does, but for the name."""
    from sweeper.optim.sam import SAM

    optimizer_class = entry.torch_class()
    param_list = list(params)
    kwargs = entry.kwargs(lr, weight_decay, momentum, _fused_supported(param_list))
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


__all__ = ["OPTIMIZERS", "make_optimizer", "optimizer_for"]
