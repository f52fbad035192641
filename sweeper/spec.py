"""Study files: TOML -> a validated, normalised `Study`.

Validation reports every problem at once, each as ``<file>: <path>: <what> (got <value>)``, e.g.
``studies/x.toml: space.lr[2]: must be > 0 (got -0.001)``. Parameter values are checked against
the task's own pydantic model, field by field, in strict mode (no silent coercion of ``"0.1"``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from sweeper.errors import StudyFileError, UnknownNameError
from sweeper.study import Study, conflicting_keys
from sweeper.tasks import get_task

__all__ = ["Study", "conflicting_keys", "load_study", "parse_study"]

KINDS = ("grid",)  # "random" and "tpe" (Optuna) are planned; `kind` is already part of the file.
DIRECTIONS = ("minimize", "maximize")


class StudyFile(BaseModel):
    """The shape of a study file, before the task-specific checks."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    task: str
    kind: Literal["grid"] = "grid"
    metric: str
    direction: Literal["minimize", "maximize"] = "minimize"
    description: str = ""
    seeds: Any = 1  # a count, or a list of seeds; checked by `_check_seeds`
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)


def load_study(path: str | Path) -> Study:
    """Read and validate a study file.

    Raises:
        StudyFileError: the file is missing, is not TOML, or fails validation; `problems` lists
            every problem found, each prefixed with the file name and the field path.
    """
    label = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyFileError([f"{label}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyFileError([f"{label}: cannot read: {exc}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError([f"{label}: invalid TOML: {exc}"]) from None
    return parse_study(raw, label)


def parse_study(raw: Mapping[str, Any], label: str) -> Study:
    """Validate an already-parsed study table; see `load_study`."""
    problems: list[str] = []
    try:
        top = StudyFile.model_validate(raw)
    except ValidationError as exc:
        problems.extend(f"{label}: {_describe(err)}" for err in exc.errors())
        # Go on with what can be checked, so the user sees every problem in one run.
        top = None

    task_name = raw.get("task")
    params_model: type[BaseModel] | None = None
    metrics: tuple[str, ...] = ()
    if isinstance(task_name, str):
        try:
            task = get_task(task_name)
            params_model, metrics = task.Params, task.metrics
        except UnknownNameError as exc:
            problems.append(f"{label}: task: {exc}")

    fixed: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    if params_model is not None:
        fixed, axes = _check_params(raw, params_model, label, problems)
        metric = raw.get("metric")
        if isinstance(metric, str) and metric not in metrics:
            problems.append(
                f"{label}: metric: unknown metric {metric!r} for task {task_name!r}; "
                f"choose one of: {', '.join(metrics)}"
            )

    seeds = _check_seeds(raw.get("seeds", 1), label, problems)
    if problems or top is None:
        raise StudyFileError(problems)
    defaults = params_model().model_dump() if params_model is not None else {}
    resolved = {k: v for k, v in {**defaults, **fixed}.items() if k not in axes}
    return Study(
        name=top.name,
        task=top.task,
        kind=top.kind,
        metric=top.metric,
        direction=top.direction,
        description=top.description,
        fixed=resolved,
        axes=axes,
        seeds=seeds,
        source=label,
    )


def _check_params(
    raw: Mapping[str, Any], model: type[BaseModel], label: str, problems: list[str]
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Validate `[fixed]` and `[space]` values field by field against the task's model."""
    fields = model.model_fields
    valid = ", ".join(fields)
    fixed_raw = raw.get("fixed", {})
    space_raw = raw.get("space", {})
    fixed: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    if isinstance(fixed_raw, dict):
        for key, value in fixed_raw.items():
            if key not in fields:
                problems.append(f"{label}: fixed.{key}: unknown parameter; valid: {valid}")
                continue
            ok, normal = _check_value(model, key, value, f"fixed.{key}", label, problems)
            if ok:
                fixed[key] = normal
    if isinstance(space_raw, dict):
        for key, values in space_raw.items():
            if key not in fields:
                problems.append(f"{label}: space.{key}: unknown parameter; valid: {valid}")
                continue
            if key in fixed_raw:
                problems.append(f"{label}: space.{key}: also set in [fixed]; keep one of them")
            if not isinstance(values, list) or not values:
                continue  # reported by the structural check
            normals: list[Any] = []
            for i, value in enumerate(values):
                ok, normal = _check_value(model, key, value, f"space.{key}[{i}]", label, problems)
                if ok:
                    if normal in normals:
                        problems.append(
                            f"{label}: space.{key}[{i}]: duplicate value (got {_show(value)})"
                        )
                    normals.append(normal)
            axes[key] = normals
    return fixed, axes


def _check_seeds(value: Any, label: str, problems: list[str]) -> tuple[int, ...]:
    """`seeds = 3` means seeds 0, 1, 2; `seeds = [0, 7]` lists them."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            problems.append(f"{label}: seeds: must be >= 1 (got {value})")
        return tuple(range(value))
    if not isinstance(value, list):
        problems.append(
            f"{label}: seeds: must be a count or a list of integers (got {_show(value)})"
        )
        return ()
    if not value:
        problems.append(f"{label}: seeds: must not be empty (got [])")
    seeds: list[int] = []
    for i, seed in enumerate(value):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            problems.append(f"{label}: seeds[{i}]: must be an integer >= 0 (got {_show(seed)})")
        elif seed in seeds:
            problems.append(f"{label}: seeds[{i}]: duplicate seed (got {seed})")
        else:
            seeds.append(seed)
    return tuple(seeds)


@cache
def _adapter(model: type[BaseModel], key: str) -> TypeAdapter[Any]:
    info = model.model_fields[key]
    typ: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(typ, config=ConfigDict(strict=True))


def _check_value(
    model: type[BaseModel], key: str, value: Any, path: str, label: str, problems: list[str]
) -> tuple[bool, Any]:
    try:
        return True, _adapter(model, key).validate_python(value)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(f"{label}: {path}: {_message(err)}")
        return False, None


def _describe(err: ErrorDetails) -> str:
    """`space.lr[2]: must be > 0 (got -0.001)` from one pydantic error."""
    return f"{_path(err['loc'])}: {_message(err)}"


def _path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx = err.get("ctx", {})
    got = f" (got {_show(err.get('input'))})"
    bounds = {
        "greater_than": ("gt", ">"),
        "greater_than_equal": ("ge", ">="),
        "less_than": ("lt", "<"),
        "less_than_equal": ("le", "<="),
    }
    if kind in bounds:
        name, op = bounds[kind]
        return f"must be {op} {_show(ctx.get(name))}{got}"
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}{got}"
    if kind == "too_short":
        return f"must not be empty{got}"
    if kind == "string_pattern_mismatch":
        return f"must use only letters, digits, '_', '.', '-'{got}"
    simple = {
        "float_type": "must be a number",
        "int_type": "must be an integer",
        "bool_type": "must be true or false",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "dict_type": "must be a table",
    }
    if kind in simple:
        return simple[kind] + got
    msg = err["msg"]
    return msg[:1].lower() + msg[1:] + got


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
