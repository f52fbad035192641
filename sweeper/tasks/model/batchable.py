"""Whether a user's model can train as one member of a batched group, and if not, why.

A batched group runs every member through ``torch.func.functional_call`` under
``torch.func.vmap``, which needs the forward pass to be a pure function of the parameters and
inputs. Each entry of `CHECKS` looks at one module and returns the reason it breaks that, or
None; a new kind of module that cannot be batched is one more entry. What the checks cannot
see (data-dependent control flow, an operation vmap has no rule for) shows up when the first
batch runs, and `NotBatchable` carries vmap's own message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sweeper.errors import SweeperError

if TYPE_CHECKING:
    import torch


class NotBatchable(SweeperError):
    """A group's model cannot be trained batched; the message says why, in one line."""


def _running_stats(module: torch.nn.Module) -> str | None:
    import torch

    if isinstance(module, torch.nn.modules.batchnorm._NormBase) and module.track_running_stats:
        return "updates running statistics in training"
    return None


def _dropout(module: torch.nn.Module) -> str | None:
    import torch

    if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
        return "draws random numbers, which members cannot draw as their own runs would"
    return None


# Checks of one module each: the reason it cannot be a batched member, or None.
CHECKS: tuple[Callable[[torch.nn.Module], str | None], ...] = (_running_stats, _dropout)


def why_not_batched(model: torch.nn.Module) -> str | None:
    """The first reason a module of `model` cannot train batched, naming it, or None:
    e.g. ``module 1 (BatchNorm1d) updates running statistics in training``."""
    for name, module in model.named_modules():
        for check in CHECKS:
            reason = check(module)
            if reason is not None:
                where = f"module {name}" if name else "the model"
                return f"{where} ({type(module).__name__}) {reason}"
    return None
