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

#: grid lists every configuration; the others let an Optuna sampler propose `budget` of them.
KINDS = ("grid", "tpe", "random")
DIRECTIONS = ("minimize", "maximize")
PRUNERS = ("median", "halving")
AGGREGATES = ("mean", "median")
#: top-level keys that only a searched study may set.
SEARCH_KEYS = ("budget", "sampler_seed", "pruner", "aggregate", "ask")


class DistributionTable(BaseModel):
    """A distribution in ``[space]`` of a searched study, e.g. ``{ low = 1e-5, high = 0.1,
    log = true }``. With `floor`, a drawn value below it becomes 0 (an explicit "off" option
    for weight decay or SAM). Integer parameters draw integers; a list means a categorical."""

    model_config = ConfigDict(extra="forbid", strict=True)

    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = Field(default=None, gt=0)
    floor: int | float | None = None


class StudyFile(BaseModel):
    """The shape of a study file, before the task-specific checks."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    task: str
    kind: Literal["grid", "tpe", "random"] = "grid"
    metric: str
    direction: Literal["minimize", "maximize"] = "minimize"
    description: str = ""
    seeds: Any = 1  # a count, or a list of seeds; checked by `_check_seeds`
    fixed: dict[str, Any] = Field(default_factory=dict)
    # A list of values (grid axis, or categorical), or a distribution table (searched studies);
    # checked entry by entry in `_check_params`.
    space: dict[str, Any] = Field(default_factory=dict)
    budget: int | None = Field(default=None, ge=1)
    sampler_seed: int = Field(default=0, ge=0)
    pruner: Literal["median", "halving"] | None = None
    aggregate: Literal["mean", "median"] = "mean"
    ask: int = Field(default=1, ge=1)


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
    search: dict[str, dict[str, Any]] = {}
    if params_model is not None:
        fixed, axes, search = _check_params(raw, params_model, label, problems)
        metric = raw.get("metric")
        if isinstance(metric, str) and metric not in metrics:
            problems.append(
                f"{label}: metric: unknown metric {metric!r} for task {task_name!r}; "
                f"choose one of: {', '.join(metrics)}"
            )

    seeds = _check_seeds(raw.get("seeds", 1), label, problems)
    _check_search(raw, label, problems)
    if raw.get("pruner") is not None and isinstance(task_name, str) and params_model is not None:
        problem = _pruning_problem(task_name, fixed)
        if problem:
            problems.append(f"{label}: pruner: {problem}")
    if problems or top is None:
        raise StudyFileError(problems)
    defaults = params_model().model_dump() if params_model is not None else {}
    resolved = {
        k: v for k, v in {**defaults, **fixed}.items() if k not in axes and k not in search
    }
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
        search=search,
        budget=top.budget,
        sampler_seed=top.sampler_seed,
        pruner=top.pruner,
        aggregate=top.aggregate,
        ask=top.ask,
        source=label,
    )


def _check_search(raw: Mapping[str, Any], label: str, problems: list[str]) -> None:
    """Rules spanning keys: a searched study has a budget; a grid has none of the search keys."""
    kind = raw.get("kind", "grid")
    if kind not in KINDS:
        return  # reported by the structural check
    if kind == "grid":
        for key in SEARCH_KEYS:
            if key in raw:
                problems.append(
                    f"{label}: {key}: only for searched studies (kind = \"tpe\" or \"random\")"
                )
    elif "budget" not in raw:
        problems.append(
            f"{label}: budget: required with kind = {kind!r} (how many configurations to try)"
        )


def _pruning_problem(task_name: str, fixed: Mapping[str, Any]) -> str | None:
    """Why the task cannot prune with these fixed parameters (None: it can)."""
    task = get_task(task_name)
    check = getattr(task, "pruning_problem", None)
    if check is None:
        return f"task {task_name!r} reports no per-epoch validation value to prune on"
    problem: str | None = check(fixed)
    return problem


def _check_params(
    raw: Mapping[str, Any], model: type[BaseModel], label: str, problems: list[str]
) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, dict[str, Any]]]:
    """Validate `[fixed]` and `[space]` values field by field against the task's model.

    Returns the fixed values, the grid axes (lists of a grid study) and the distributions of a
    searched study (its lists become categoricals).
    """
    fields = model.model_fields
    valid = ", ".join(fields)
    searched = raw.get("kind", "grid") in KINDS[1:]
    fixed_raw = raw.get("fixed", {})
    space_raw = raw.get("space", {})
    fixed: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    search: dict[str, dict[str, Any]] = {}
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
            if isinstance(values, dict):
                if not searched:
                    problems.append(
                        f"{label}: space.{key}: a distribution needs kind = \"tpe\" or "
                        "\"random\"; a grid lists its values"
                    )
                    continue
                dist = _check_distribution(model, key, values, label, problems)
                if dist is not None:
                    search[key] = dist
                continue
            if not isinstance(values, list):
                problems.append(
                    f"{label}: space.{key}: must be a list of values"
                    + (" or a distribution table" if searched else "")
                    + f" (got {_show(values)})"
                )
                continue
            if not values:
                problems.append(f"{label}: space.{key}: must not be empty (got [])")
                continue
            normals: list[Any] = []
            for i, value in enumerate(values):
                ok, normal = _check_value(model, key, value, f"space.{key}[{i}]", label, problems)
                if ok:
                    if normal in normals:
                        problems.append(
                            f"{label}: space.{key}[{i}]: duplicate value (got {_show(value)})"
                        )
                    normals.append(normal)
            if searched:
                search[key] = {"type": "categorical", "choices": normals}
            else:
                axes[key] = normals
    return fixed, axes, search


def _check_distribution(
    model: type[BaseModel], key: str, raw: dict[str, Any], label: str, problems: list[str]
) -> dict[str, Any] | None:
    """A normalised distribution (see `sweeper.search`) from a ``[space]`` table, or None."""
    path = f"space.{key}"
    try:
        table = DistributionTable.model_validate(raw)
    except ValidationError as exc:
        problems.extend(f"{label}: {path}.{_describe(err)}" for err in exc.errors())
        return None
    before = len(problems)
    ok_low, low = _check_value(model, key, table.low, f"{path}.low", label, problems)
    ok_high, high = _check_value(model, key, table.high, f"{path}.high", label, problems)
    if not (ok_low and ok_high):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        problems.append(f"{label}: {path}: a range needs a numeric parameter; list the choices")
        return None
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if high <= low:
        problems.append(f"{label}: {path}.high: must be > low ({_show(low)}) (got {_show(high)})")
    if table.log and low <= 0:
        problems.append(f"{label}: {path}.low: must be > 0 with log = true (got {_show(low)})")
    if table.log and table.step is not None:
        problems.append(f"{label}: {path}.step: cannot be combined with log = true")
    if kind == "int" and table.step is not None and not isinstance(table.step, int):
        problems.append(f"{label}: {path}.step: must be an integer (got {_show(table.step)})")
    floor = table.floor
    if floor is not None:
        if not low < floor < high:
            problems.append(
                f"{label}: {path}.floor: must lie between low and high (got {_show(floor)})"
            )
        _check_value(model, key, 0 if kind == "int" else 0.0, f"{path}.floor", label, problems)
    if len(problems) > before:
        return None
    dist: dict[str, Any] = {"type": kind, "low": low, "high": high, "log": table.log}
    if table.step is not None:
        dist["step"] = table.step
    if floor is not None:
        dist["floor"] = float(floor) if kind == "float" else floor
    return dist


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
