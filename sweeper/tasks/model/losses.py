"""Losses by name, the built-in metrics, and one evaluation used by both training paths.

A loss is ``loss(pred, target) -> scalar tensor`` (a batch mean); a user's own loss must be
written with torch operations only (no ``.item()``, no Python branches on values) so that it
runs under ``torch.func.vmap`` in a batched group. A metric is ``metric(pred, target) -> float``
and runs once per member after training, outside vmap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from sweeper.errors import UnknownNameError

if TYPE_CHECKING:
    import torch

Loss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
Metric = Callable[["torch.Tensor", "torch.Tensor"], "float | torch.Tensor"]


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error; `target` is reshaped to `pred` (so ``[B, 1]`` meets ``[B]``)."""
    return (pred - target.reshape(pred.shape)).square().mean()


def cross_entropy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``torch.nn.functional.cross_entropy``: logits ``[B, C]``, class indices ``[B]``."""
    import torch.nn.functional as F

    return F.cross_entropy(pred, target)


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of rows whose largest logit is the target class."""
    return float((pred.argmax(dim=-1) == target).double().mean())


# name -> loss; a new loss is one line here.
LOSSES: dict[str, Loss] = {"cross_entropy": cross_entropy, "mse": mse}


def get_loss(loss: str | Loss) -> Loss:
    """The loss called `loss`, or `loss` itself when it is a callable.

    Raises:
        UnknownNameError: an unknown name; the message lists the names.
    """
    if callable(loss):
        return loss
    found = LOSSES.get(loss)
    if found is None:
        raise UnknownNameError(f"unknown loss {loss!r}; choose one of: {', '.join(sorted(LOSSES))}")
    return found


def evaluate(
    loss: Loss, metrics: Mapping[str, Metric], pred: torch.Tensor, target: torch.Tensor, split: str
) -> dict[str, float]:
    """``{"<split>_loss": ..., "<split>_<metric>": ...}`` of predictions on a whole split."""
    values = {f"{split}_loss": float(loss(pred, target))}
    for name, metric in metrics.items():
        values[f"{split}_{name}"] = float(metric(pred, target))
    return values
