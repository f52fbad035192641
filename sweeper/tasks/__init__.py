"""Task registry: name -> implementation, imported lazily so `sweeper --help` stays fast.

Built-in tasks are one line each in `REGISTRY` plus their package (``tasks/<name>/``); installed
packages add theirs through the ``sweeper.tasks`` entry-point group. A study can also run a
user's function or command: `sweeper.tasks.resolve.task_for` turns any study into its task.
"""

from __future__ import annotations

import importlib
from importlib import metadata

from sweeper.errors import UnknownNameError
from sweeper.tasks.base import RunContext, Task, TrialInput, TrialOutcome

# name -> "module:ClassName"; a new task is one line here plus its module.
REGISTRY: dict[str, str] = {
    "ecg": "sweeper.tasks.ecg:EcgTask",
    "obesity": "sweeper.tasks.obesity:ObesityTask",
    "toy": "sweeper.tasks.toy:ToyTask",
}
#: the entry-point group through which installed packages register tasks: in their
#: pyproject.toml, ``[project.entry-points."sweeper.tasks"] mytask = "mypkg.tasks:MyTask"``
#: (a class whose instances follow `sweeper.tasks.base.Task`).
ENTRY_POINT_GROUP = "sweeper.tasks"

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "RunContext",
    "Task",
    "TrialInput",
    "TrialOutcome",
    "get_task",
    "plugins",
]


def get_task(name: str) -> Task:
    """Return the built-in or installed task called `name`.

    Raises:
        UnknownNameError: no task of that name; the message lists the valid names.
    """
    target = REGISTRY.get(name)
    if target is None:
        plugin = plugins().get(name)
        if plugin is None:
            choices = ", ".join(sorted({*REGISTRY, *plugins()}))
            raise UnknownNameError(f"unknown task {name!r}; choose one of: {choices}")
        found: Task = plugin.load()()
        return found
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    task: Task = cls()
    return task


def plugins() -> dict[str, metadata.EntryPoint]:
    """Installed tasks: entry-point name -> entry point (loaded only when used)."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
