"""Model tasks: the user describes a model (`ModelSpec`), sweeper owns the training loop.

::

    spec (ModelSpec: build, data, loss, metrics, dtype) + hyper (lr, optimizer, epochs, ...)
      -> per_trial.train_per_trial (a torch loop)    batched.train_batched (torch.func, vmap;
                                                      a plain MLP: lanes, the C kernel)
      -> result.ModelResult; task.ModelTask runs a study's trials with either, saving and
         resuming their training state (checkpoints: per trial, or per member of a group)
"""

from __future__ import annotations

from sweeper.tasks.model.data import Splits
from sweeper.tasks.model.losses import accuracy
from sweeper.tasks.model.result import ModelResult
from sweeper.tasks.model.spec import ModelSpec, ModelSpecError

__all__ = ["ModelResult", "ModelSpec", "ModelSpecError", "Splits", "accuracy"]
