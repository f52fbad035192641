"""A validated study: what the store keeps and every later command reads back.

Kept apart from `sweeper.spec` (which validates study files with pydantic) so that the query
commands, which only read stored studies, never import the validator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Study:
    """A validated study.

    Attributes:
        fixed: every task parameter that is not a sweep axis, resolved: the task's defaults
            overridden by the file's ``[fixed]`` table. Part of every trial's identity.
        axes: the sweep axes in file order, values normalised by the task's parameter model.
        seeds: replicate seeds; every configuration runs once per seed.
    """

    name: str
    task: str
    kind: str
    metric: str
    direction: str
    description: str
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]
    seeds: tuple[int, ...]
    source: str | None = field(default=None, compare=False)

    def to_json(self) -> str:
        """Canonical JSON of the study (the `source` path is not part of it)."""
        body = {
            "name": self.name,
            "task": self.task,
            "kind": self.kind,
            "metric": self.metric,
            "direction": self.direction,
            "description": self.description,
            "fixed": self.fixed,
            # Pairs, not an object: the axis order is the table layout and must survive.
            "axes": [[name, values] for name, values in self.axes.items()],
            "seeds": list(self.seeds),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> Study:
        body = json.loads(text)
        body["seeds"] = tuple(body["seeds"])
        body["axes"] = {name: values for name, values in body["axes"]}
        return cls(**body, source=source)


def conflicting_keys(old: Study, new: Study) -> list[str]:
    """Keys whose change would alter the meaning of trials stored under `old`.

    The task and every resolved fixed parameter must stay the same, except that a fixed
    parameter may become an axis that still contains its old value (the study grows) and an
    axis may become fixed at one of its old values (the study narrows). Adding axis values and
    seeds is always allowed. Returns the sorted offending keys; empty means compatible.
    """
    changed: set[str] = set()
    if old.task != new.task:
        changed.add("task")
    for key in set(old.fixed) | set(new.fixed) | set(old.axes) | set(new.axes):
        old_vals = [old.fixed[key]] if key in old.fixed else old.axes.get(key)
        new_vals = [new.fixed[key]] if key in new.fixed else new.axes.get(key)
        if old_vals is None or new_vals is None:
            # A parameter the task did not have before (or lost): the trials' meaning changed.
            changed.add(key)
        elif key in old.fixed and old.fixed[key] not in new_vals:
            changed.add(key)  # a fixed value changed, or became an axis without its old value
        elif key in new.fixed and key in old.axes and new.fixed[key] not in old_vals:
            changed.add(key)  # an axis was pinned to a value its stored trials never had
    return sorted(changed)
