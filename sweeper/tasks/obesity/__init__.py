"""The obesity task: a small MLP regressing the ordinal obesity level (UCI dataset 544).

Follows `shared/protocols/obesity.md`. The modules follow the data flow::

    params (ObesityParams) -> data (fetch CSV -> load_encoded -> split_data -> Split)
      -> model (build_model: the seeded MLP)
      -> train (train_one: one trial)  |  batched (train_group: a group as one stacked model,
                                           on the C kernel (sweeper.kernel.lanes.LaneMLP), or
                                           in PyTorch (stacked.StackedMLP))
      -> task (ObesityTask: what the worker calls) -> TrialOutcome

Optimizers and SAM come from the registry in `sweeper.optim`; seeds, parameter validation and
the divergence check from `sweeper.tasks.common`.
"""

from __future__ import annotations

from sweeper.tasks.obesity.task import ObesityTask

__all__ = ["ObesityTask"]
