"""A study's parameter values, distributions and seeds, checked against the task's model."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sweeper.samplers import KINDS
from sweeper.spec.bounds import MAX_SEEDS, SEED_LIMIT, finite
from sweeper.spec.messages import describe, message, show


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


def check_params(
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
            ok, normal = check_value(model, key, value, f"fixed.{key}", label, problems)
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
                        f'{label}: space.{key}: a distribution needs kind = "tpe" or '
                        '"random"; a grid lists its values'
                    )
                    continue
                dist = check_distribution(model, key, values, label, problems)
                if dist is not None:
                    search[key] = dist
                continue
            if not isinstance(values, list):
                problems.append(
                    f"{label}: space.{key}: must be a list of values"
                    + (" or a distribution table" if searched else "")
                    + f" (got {show(values)})"
                )
                continue
            if not values:
                problems.append(f"{label}: space.{key}: must not be empty (got [])")
                continue
            normals: list[Any] = []
            seen: set[Any] = set()  # a set, not `in normals`: a long axis stays linear
            for i, value in enumerate(values):
                ok, normal = check_value(model, key, value, f"space.{key}[{i}]", label, problems)
                if ok:
                    if _identity(normal) in seen:
                        problems.append(
                            f"{label}: space.{key}[{i}]: duplicate value (got {show(value)})"
                        )
                    seen.add(_identity(normal))
                    normals.append(normal)
            if searched:
                search[key] = {"type": "categorical", "choices": normals}
            else:
                axes[key] = normals
    return fixed, axes, search


def check_distribution(
    model: type[BaseModel], key: str, raw: dict[str, Any], label: str, problems: list[str]
) -> dict[str, Any] | None:
    """A normalised distribution (see `sweeper.search`) from a ``[space]`` table, or None."""
    path = f"space.{key}"
    try:
        table = DistributionTable.model_validate(raw)
    except ValidationError as exc:
        problems.extend(f"{label}: {path}.{describe(err)}" for err in exc.errors())
        return None
    before = len(problems)
    ok_low, low = check_value(model, key, table.low, f"{path}.low", label, problems)
    ok_high, high = check_value(model, key, table.high, f"{path}.high", label, problems)
    if not (ok_low and ok_high):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        problems.append(f"{label}: {path}: a range needs a numeric parameter; list the choices")
        return None
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if high <= low:
        problems.append(f"{label}: {path}.high: must be > low ({show(low)}) (got {show(high)})")
    elif kind == "float" and not math.isfinite(high - low):
        # A sampler draws low + u * (high - low): the width itself must be a number.
        problems.append(
            f"{label}: {path}: the range from {show(low)} to {show(high)} is too wide to "
            "sample (high - low overflows)"
        )
    if table.log and low <= 0:
        problems.append(f"{label}: {path}.low: must be > 0 with log = true (got {show(low)})")
    if table.log and table.step is not None:
        problems.append(f"{label}: {path}.step: cannot be combined with log = true")
    if kind == "int" and table.step is not None and not isinstance(table.step, int):
        problems.append(f"{label}: {path}.step: must be an integer (got {show(table.step)})")
    floor = table.floor
    if floor is not None:
        if not low < floor < high:
            problems.append(
                f"{label}: {path}.floor: must lie between low and high (got {show(floor)})"
            )
        check_value(model, key, 0 if kind == "int" else 0.0, f"{path}.floor", label, problems)
    if len(problems) > before:
        return None
    dist: dict[str, Any] = {"type": kind, "low": low, "high": high, "log": table.log}
    if table.step is not None:
        dist["step"] = table.step
    if floor is not None:
        dist["floor"] = float(floor) if kind == "float" else floor
    return dist


def check_seeds(value: Any, label: str, problems: list[str]) -> tuple[int, ...]:
    """`seeds = 3` means seeds 0, 1, 2; `seeds = [0, 7]` lists them.

    At most `MAX_SEEDS` of them, each below `SEED_LIMIT` (the database's integer column).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            problems.append(f"{label}: seeds: must be >= 1 (got {value})")
        elif value > MAX_SEEDS:
            problems.append(f"{label}: seeds: at most {MAX_SEEDS} replicate seeds (got {value})")
            return ()
        return tuple(range(value))
    if not isinstance(value, list):
        problems.append(
            f"{label}: seeds: must be a count or a list of integers (got {show(value)})"
        )
        return ()
    if not value:
        problems.append(f"{label}: seeds: must not be empty (got [])")
    if len(value) > MAX_SEEDS:
        problems.append(
            f"{label}: seeds: at most {MAX_SEEDS} replicate seeds (got a list of {len(value)})"
        )
        return ()
    seeds: dict[int, None] = {}  # ordered, with O(1) look-ups
    for i, seed in enumerate(value):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            problems.append(f"{label}: seeds[{i}]: must be an integer >= 0 (got {show(seed)})")
        elif seed >= SEED_LIMIT:
            problems.append(
                f"{label}: seeds[{i}]: must be < 2**31 = {SEED_LIMIT} (the database stores seeds "
                f"as 32-bit integers) (got {seed})"
            )
        elif seed in seeds:
            problems.append(f"{label}: seeds[{i}]: duplicate seed (got {seed})")
        else:
            seeds[seed] = None
    return tuple(seeds)


@cache
def adapter(model: type[BaseModel], key: str) -> TypeAdapter[Any]:
    info = model.model_fields[key]
    typ: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(typ, config=ConfigDict(strict=True))


def _identity(value: Any) -> Any:
    """A hashable stand-in for a parameter value, equal where the values are equal."""
    try:
        hash(value)
    except TypeError:
        return ("json", json.dumps(value, sort_keys=True, default=str))
    return value


def check_value(
    model: type[BaseModel], key: str, value: Any, path: str, label: str, problems: list[str]
) -> tuple[bool, Any]:
    if not finite(value):
        return False, None  # reported once, by `bounds.non_finite`
    try:
        return True, adapter(model, key).validate_python(value)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(f"{label}: {path}: {message(err)}")
        return False, None
