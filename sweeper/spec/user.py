"""The task of a study that runs a user's code: its function loaded, its parameters typed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sweeper.errors import UnknownNameError
from sweeper.tasks import get_task
from sweeper.tasks.base import Task
from sweeper.tasks.base import params_model as model_of


def load_task(
    raw: Mapping[str, Any], base: Path, label: str, problems: list[str]
) -> tuple[Task | None, type[BaseModel] | None, tuple[str, ...]]:
    """The study's task, its parameter model and metrics, from ``task`` or ``command``."""
    task_name, command = raw.get("task"), raw.get("command")
    if task_name is not None and command is not None:
        problems.append(f"{label}: command: a study runs a task or a command; remove one of them")
        return None, None, ()
    if task_name is None and command is None:
        problems.append(
            f"{label}: task: required: a built-in task (obesity, ecg, toy), a function "
            '("train.py:train"), or else command = [...]'
        )
        return None, None, ()
    if command is not None:
        if isinstance(command, list) and not command:
            problems.append(f"{label}: command: must not be empty (got [])")
        return None, None, ()  # its shape is checked by `StudyFile`
    if not isinstance(task_name, str):
        return None, None, ()
    from sweeper.tasks.function import TaskLoadError

    try:
        if ":" in task_name:
            from sweeper.tasks.function import FunctionTask

            function = FunctionTask.load(
                task_name,
                base,
                metric=str(raw.get("metric", "")),
                trials_dir=base,
                params=raw["params"] if isinstance(raw.get("params"), str) else None,
            )
            return function, function.params_model, ()
        if raw.get("params") is not None:
            problems.append(f'{label}: params: only for a function task (task = "file.py:fn")')
        task = get_task(task_name)
        return task, model_of(task), tuple(task.metrics)
    except (UnknownNameError, TaskLoadError) as exc:
        problems.append(f"{label}: task: {exc}")
        return None, None, ()


def inferred_model(raw: Mapping[str, Any], label: str, problems: list[str]) -> type[BaseModel]:
    """A strict model of a user's parameters, each typed by the values the study gives it: an
    axis of integers stays integer, numbers with a float among them are floats, strings,
    booleans; anything else (lists, tables) is passed as given."""
    from pydantic import create_model

    fields: dict[str, Any] = {}
    fixed, space = raw.get("fixed", {}), raw.get("space", {})
    sources: list[tuple[str, str, list[Any]]] = []
    if isinstance(fixed, dict):
        sources += [(f"fixed.{k}", k, [v]) for k, v in fixed.items()]
    if isinstance(space, dict):
        for key, values in space.items():
            if isinstance(values, dict):
                values = [values.get("low"), values.get("high")]
            sources.append((f"space.{key}", key, values if isinstance(values, list) else []))
    for path, key, values in sources:
        if key.startswith("_") or not key:
            problems.append(f"{label}: {path}: a parameter name must not start with '_'")
            continue
        fields[key] = (common_type(values, f"{label}: {path}", problems), ...)
    model: type[BaseModel] = create_model(
        "Params", __config__=ConfigDict(extra="forbid", strict=True), **fields
    )
    model.__sweeper_inferred__ = True  # type: ignore[attr-defined]
    return model


def common_type(values: list[Any], where: str, problems: list[str]) -> Any:
    kinds = {
        "bool" if isinstance(v, bool)
        else "int" if isinstance(v, int)
        else "float" if isinstance(v, float)
        else "str" if isinstance(v, str)
        else "other"
        for v in values
    }  # fmt: skip
    if kinds <= {"bool"} and kinds:
        return bool
    if kinds == {"int"}:
        return int
    if kinds and kinds <= {"int", "float"}:
        return float
    if kinds == {"str"}:
        return str
    if len(kinds) > 1:
        problems.append(f"{where}: mixes {' and '.join(sorted(kinds))} values; use one type")
    return Any
