"""Task registry: name -> implementation, imported lazily so `sweeper --help` stays fast."""

from __future__ import annotations

import importlib

from sweeper.errors import UnknownNameError
from sweeper.tasks.base import RunContext, Task, TrialInput, TrialOutcome

# name -> "module:ClassName"; a new task is one line here plus its module.
REGISTRY: dict[str, str] = {
    "ecg": "sweeper.tasks.ecg:EcgTask",
    "obesity": "sweeper.tasks.obesity:ObesityTask",
    "toy": "sweeper.tasks.toy:ToyTask",
}

__all__ = ["REGISTRY", "RunContext", "Task", "TrialInput", "TrialOutcome", "get_task"]


def get_task(name: str) -> Task:
    """Return the task registered as `name`.

    Raises:
        UnknownNameError: no task of that name; the message lists the valid names.
    """
    target = REGISTRY.get(name)
    if target is None:
        choices = ", ".join(sorted(REGISTRY))
        raise UnknownNameError(f"unknown task {name!r}; choose one of: {choices}")
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    task: Task = cls()
    return task
