"""Study files: TOML -> a validated, normalised `Study`.

Validation reports every problem at once, each as ``<file>: <path>: <what> (got <value>)``, e.g.
``studies/x.toml: space.lr[2]: must be > 0 (got -0.001)``. Parameter values are checked against
the task's own pydantic model, field by field, in strict mode (no silent coercion of ``"0.1"``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from sweeper.errors import StudyFileError
from sweeper.registry import unknown
from sweeper.samplers import KINDS, PRUNERS
from sweeper.spec.bounds import MAX_DEPTH, MAX_FILE_BYTES, SEED_LIMIT, non_finite, too_deep
from sweeper.spec.messages import describe
from sweeper.spec.user import inferred_model, load_task
from sweeper.spec.values import check_params, check_seeds
from sweeper.tasks.base import Task
from sweeper.tasks.resolve import COMMAND

__all__ = ["read", "validate"]

#: top-level keys that only a searched study may set.
SEARCH_KEYS = ("budget", "sampler_seed", "pruner", "aggregate", "ask")
#: most configurations one worker asks the sampler for at once.
MAX_ASK = 1000


class StudyFile(BaseModel):
    """The shape of a study file, before the task-specific checks."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
    # A built-in or installed task's name, or a user's function ("train.py:train"); or else a
    # command to run per trial. Exactly one of the two (checked in `validate`).
    task: str | None = None
    command: list[str] | None = None
    params: str | None = None  # where a function task's pydantic Params model is
    prune_on: str | None = None  # the reported curve a pruner judges (user tasks)
    timeout: float | None = Field(default=None, gt=0)  # seconds per trial (command tasks)
    kind: str = "grid"  # "grid" or a sampler of `sweeper.samplers.SAMPLERS` (checked below)
    metric: str
    direction: Literal["minimize", "maximize"] = "minimize"
    description: str = ""
    seeds: Any = 1  # a count, or a list of seeds; checked by `check_seeds`
    fixed: dict[str, Any] = Field(default_factory=dict)
    # A list of values (grid axis, or categorical), or a distribution table (searched studies);
    # checked entry by entry in `check_params`.
    space: dict[str, Any] = Field(default_factory=dict)
    # How many trials may run is a run's option (`RunOptions.max_trials`), checked by `start`.
    budget: int | None = Field(default=None, ge=1, lt=SEED_LIMIT)
    sampler_seed: int = Field(default=0, ge=0, lt=SEED_LIMIT)
    pruner: str | None = None  # a key of `sweeper.samplers.PRUNERS` (checked below)
    aggregate: Literal["mean", "median"] = "mean"
    # A count, or "auto": sized by the worker so that batched groups stay large
    # (`sweeper.search.ask_size`).
    ask: Annotated[int, Field(ge=1, le=MAX_ASK)] | Literal["auto"] = 1

    @field_validator("ask", mode="wrap")
    @classmethod
    def _one_line_for_ask(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # One problem, not one per member of the union.
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(f'must be an integer from 1 to {MAX_ASK}, or "auto"') from None


def read(path: str | Path) -> dict[str, Any]:
    """Read a study file's TOML table (validate it with `validate`).

    Raises:
        StudyFileError: the file is missing, unreadable, larger than `MAX_FILE_BYTES`, or
            not TOML.
    """
    label = str(path)
    try:
        # At most one byte past the limit is read: a link to /dev/zero fails at once.
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise StudyFileError([f"{label}: no such file"]) from None
    except IsADirectoryError:
        raise StudyFileError([f"{label}: is a directory, not a study file"]) from None
    except OSError as exc:
        raise StudyFileError([f"{label}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise StudyFileError(
            [f"{label}: larger than {MAX_FILE_BYTES // 1024} KiB: not a study file"]
        )
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise StudyFileError([f"{label}: not UTF-8 text (byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError([f"{label}: invalid TOML: {exc}"]) from None
    except RecursionError:
        raise StudyFileError(
            [f"{label}: invalid TOML: nested deeper than {MAX_DEPTH} levels of tables and arrays"]
        ) from None
    return raw


def validate(raw: Mapping[str, Any], label: str, base_dir: Path | None = None) -> dict[str, Any]:
    """Validate a study table; return the keyword arguments of its `sweeper.study.Study`.

    Args:
        base_dir: the directory a user's task file and command are relative to (the study
            file's; default: the current directory).

    Raises:
        StudyFileError: `problems` lists every problem found, each prefixed with `label` (the
            file name) and the field path.
    """
    deep = too_deep(raw, label)
    if deep:
        raise StudyFileError([deep])  # nothing else can be walked safely
    problems = non_finite(raw, label)
    try:
        top = StudyFile.model_validate(raw)
    except ValidationError as exc:
        problems.extend(f"{label}: {describe(err)}" for err in exc.errors())
        # Go on with what can be checked, so the user sees every problem in one run.
        top = None

    base = (base_dir or Path.cwd()).resolve()
    task_name, command = raw.get("task"), raw.get("command")
    user = command is not None or (isinstance(task_name, str) and ":" in task_name)
    task, params_model, metrics = load_task(raw, base, label, problems)
    if user and params_model is None:
        params_model = inferred_model(raw, label, problems)

    fixed: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    search: dict[str, dict[str, Any]] = {}
    if params_model is not None:
        fixed, axes, search = check_params(raw, params_model, label, problems)
        metric = raw.get("metric")
        if metrics and isinstance(metric, str) and metric not in metrics:
            problems.append(
                f"{label}: metric: unknown metric {metric!r} for task {task_name!r}; "
                f"choose one of: {', '.join(metrics)}"
            )
    if isinstance(command, list) and all(isinstance(c, str) for c in command):
        from sweeper.tasks.command_template import RESERVED, template_problems

        names = [*fixed, *axes, *search]
        problems.extend(f"{label}: {p}" for p in template_problems(command, names))
        problems.extend(
            f"{label}: space.{n}: the name is the trial's own {{{n}}}; rename the parameter"
            for n in names
            if n in RESERVED
        )
    if raw.get("timeout") is not None and command is None:
        problems.append(f"{label}: timeout: only for command tasks (command = [...])")

    if isinstance(raw.get("kind"), str) and raw["kind"] not in KINDS:
        problems.append(f"{label}: kind: {unknown('kind', raw['kind'], KINDS)}")
    if isinstance(raw.get("pruner"), str) and raw["pruner"] not in PRUNERS:
        problems.append(f"{label}: pruner: {unknown('pruner', raw['pruner'], PRUNERS)}")
    seeds = check_seeds(raw.get("seeds", 1), label, problems)
    _check_search(raw, label, problems)
    if raw.get("pruner") is not None and task is not None and not user:
        problem = _pruning_problem(task, str(task_name), fixed)
        if problem:
            problems.append(f"{label}: pruner: {problem}")
    if problems or top is None:
        raise StudyFileError(problems)
    defaults = {}
    if params_model is not None and not getattr(params_model, "__sweeper_inferred__", False):
        defaults = params_model().model_dump()
    resolved = {k: v for k, v in {**defaults, **fixed}.items() if k not in axes and k not in search}
    return dict(
        name=top.name,
        task=top.task if top.task is not None else COMMAND,
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
        command=tuple(top.command or ()),
        timeout=top.timeout,
        params_model=top.params,
        prune_on=top.prune_on,
        base_dir=str(base) if user else None,
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
                    f'{label}: {key}: only for searched studies (kind = "tpe" or "random")'
                )
    elif "budget" not in raw:
        problems.append(
            f"{label}: budget: required with kind = {kind!r} (how many configurations to try)"
        )


def _pruning_problem(task: Task, task_name: str, fixed: Mapping[str, Any]) -> str | None:
    """Why the task cannot prune with these fixed parameters (None: it can)."""
    check = getattr(task, "pruning_problem", None)
    if check is None:
        return f"task {task_name!r} reports no per-epoch validation value to prune on"
    problem: str | None = check(fixed)
    return problem
