"""A validated study: what the store keeps and every later command reads back.

`Study.from_file` and `Study.from_dict` validate with `sweeper.spec` (pydantic and the task
registry), imported only then, so that the query commands, which only read stored studies,
never import the validator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Study:
    """A validated study.

    Attributes:
        fixed: every task parameter that is not a sweep axis, resolved: the task's defaults
            overridden by the file's ``[fixed]`` table. Part of every trial's identity.
        axes: the sweep axes in file order, values normalised by the task's parameter model
            (grids only; a searched study has none).
        seeds: replicate seeds; every configuration runs once per seed.
        search: a searched study's distributions in file order, name -> a table such as
            ``{"type": "float", "low": 1e-5, "high": 0.1, "log": True}`` (see `sweeper.search`).
        budget: how many configurations a searched study proposes (each runs every seed).
        sampler_seed: seeds the sampler, so one worker's sequence of proposals is reproducible.
        pruner: "median", "halving" or None (no pruning).
        aggregate: how a configuration's seeds are combined into the value the sampler sees.
        ask: most configurations proposed at once by one worker (a batch of asks), or
            ``"auto"``: sized so that batched groups stay large (`sweeper.search.ask_size`).
        command: a command task's argument template (`task` is then ``"command"``).
        timeout: seconds a trial of a user's task may run before it fails (None: no limit).
        params_model: where a function task's pydantic model of its parameters is, e.g.
            ``"train.py:Params"`` (None: the function's ``Params`` attribute, if any).
        prune_on: the reported curve a pruner judges (user tasks; default: the metric's name).
        base_dir: the absolute directory of the study file, against which a user's task file
            and command are resolved; None for built-in tasks.
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
    search: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: int | None = None
    sampler_seed: int = 0
    pruner: str | None = None
    aggregate: str = "mean"
    ask: int | str = 1
    command: tuple[str, ...] = ()
    timeout: float | None = None
    params_model: str | None = None
    prune_on: str | None = None
    base_dir: str | None = None
    source: str | None = field(default=None, compare=False)

    @classmethod
    def from_file(cls, path: str | Path) -> Study:
        """Read and validate a study file (TOML).

        Raises:
            StudyFileError: the file is missing, is not TOML, or fails validation; `problems`
                lists every problem found, each prefixed with the file name and the field path.
        """
        from sweeper import spec

        return cls(**spec.validate(spec.read(path), str(path), Path(path).resolve().parent))

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], label: str = "<study>", *, base_dir: str | Path | None = None
    ) -> Study:
        """Validate a study given as a dict with a study file's keys (``name``, ``task``,
        ``metric``, ``[fixed]`` as ``fixed``, ``[space]`` as ``space``, ...).

        Args:
            base_dir: what a user's task file or command is relative to (default: the
                current directory).

        Raises:
            StudyFileError: every problem found, each prefixed with `label` and the field path.
        """
        from sweeper import spec

        return cls(**spec.validate(raw, label, Path(base_dir) if base_dir else None))

    @property
    def user_task(self) -> bool:
        """Whether the study runs the user's code (a function or a command), not a built-in."""
        return bool(self.command) or ":" in self.task

    @property
    def searched(self) -> bool:
        """Whether a sampler proposes the configurations (rather than a grid listing them)."""
        return self.kind != "grid"

    def to_json(self) -> str:
        """Canonical JSON of the study (the `source` path is not part of it)."""
        body: dict[str, Any] = {
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
        if self.searched:
            body.update(
                search=[[name, dist] for name, dist in self.search.items()],
                budget=self.budget,
                sampler_seed=self.sampler_seed,
                pruner=self.pruner,
                aggregate=self.aggregate,
                ask=self.ask,
            )
        # A user's task only: the JSON of a built-in task's study is as it always was.
        for key in ("command", "timeout", "params_model", "prune_on", "base_dir"):
            value = getattr(self, key)
            if value:
                body[key] = list(value) if key == "command" else value
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> Study:
        body = json.loads(text)
        body["seeds"] = tuple(body["seeds"])
        body["axes"] = {name: values for name, values in body["axes"]}
        body["command"] = tuple(body.get("command", ()))
        if "search" in body:
            body["search"] = {name: dist for name, dist in body["search"]}
        return cls(**body, source=source)


def load_study(path: str | Path) -> Study:
    """`Study.from_file`."""
    return Study.from_file(path)


def parse_study(raw: dict[str, Any], label: str) -> Study:
    """`Study.from_dict`."""
    return Study.from_dict(raw, label)


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
    # How a user's code is called is part of what its trials mean (its code is checked by hash).
    for key in ("command", "params_model", "prune_on"):
        if getattr(old, key) != getattr(new, key):
            changed.add(key)
    if old.searched or new.searched:
        # A search's history only means something under the sampler that made it. The budget
        # may grow and seeds may be added (every configuration then runs the new seeds too).
        for key in ("kind", "search", "sampler_seed", "aggregate", "pruner", "metric"):
            if getattr(old, key) != getattr(new, key):
                changed.add(key)
    for key in set(old.fixed) | set(new.fixed) | set(old.axes) | set(new.axes):
        if key in old.search or key in new.search:
            continue  # compared as a whole above
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
