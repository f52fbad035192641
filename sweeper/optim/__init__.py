"""Optimizers: one registry entry per optimizer serves the per-trial and the batched path.

::

    registry (name -> OptimizerEntry; get_optimizer; OptimizerName for parameter models)
      <- sgd, adam (one module each: torch class, keyword arguments, batched update)
    per_trial.make_optimizer (torch.optim, wrapped in sam.SAM)   batched.BatchedOptimizer
                                                                   + sam.sam_ascent

A new optimizer is a module like `sweeper.optim.adam` and one line in
`sweeper.optim.registry.REGISTRY`. This package imports no torch; `per_trial`, `batched` and
`sam` are the training-time modules.
"""

from __future__ import annotations

from sweeper.optim.registry import (
    OPTIMIZERS,
    REGISTRY,
    OptimizerEntry,
    OptimizerName,
    get_optimizer,
)

__all__ = ["OPTIMIZERS", "REGISTRY", "OptimizerEntry", "OptimizerName", "get_optimizer"]
