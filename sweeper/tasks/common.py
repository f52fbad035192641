"""Helpers every built-in task uses: the params base model, validation, group keys, seeds, NaNs.

Written once here so that a new task (``tasks/<name>/``: params, data, model, train, task)
copies a pattern instead of code:

- `TaskParams`: the base of a task's parameter model (unknown keys are an error).
- `validate_params`: a mapping -> the task's model, every problem reported with the values.
- `shared_key`: a group key from validated parameters, leaving out what members may vary.
- seeds come from `sweeper.seeds.derive_seed` (hashing, never offsets).
- `check_finite` / `diverged`: the one wording of ``diverged: <name> became <value> <when>``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from sweeper.canonical import canonical_json
from sweeper.errors import StudyFileError, TrialDiverged

P = TypeVar("P", bound=BaseModel)


class TaskParams(BaseModel):
    """Base of a task's parameter model: every field has a default, unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


def validate_params(model: type[P], params: Mapping[str, Any]) -> P:
    """Validate `params` against a task's `model`, reporting every problem at once.

    The study file's per-field checks cannot see rules that span fields (momentum with adam,
    say); this is where they surface, before any trial is stored.

    Raises:
        StudyFileError: one problem per broken rule, as
            ``parameters {"momentum":0.9,"optimizer":"adam"}: <what is wrong>``.
    """
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        shown = canonical_json(dict(params))
        raise StudyFileError(
            [
                f"parameters {shown}: {err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors()
            ]
        ) from None


def shared_key(params: BaseModel, vary: Iterable[str] = (), **extra: Any) -> str:
    """Canonical JSON of the validated `params` a batched group must share.

    Args:
        params: validated parameters (defaults filled in, so spelling one out changes nothing).
        vary: fields members of one group may differ in; left out of the key.
        **extra: derived values that must be shared too (e.g. ``sam=rho > 0``).
    """
    shared = params.model_dump(exclude=set(vary))
    shared.update(extra)
    return canonical_json(shared)


def diverged(name: str, value: float, when: str) -> str:
    """The error text of a diverged trial: ``diverged: train loss became nan at epoch 17``."""
    return f"diverged: {name} became {value} {when}"


def check_finite(name: str, value: float, when: str) -> None:
    """Raise `TrialDiverged` when `value` is NaN or infinite.

    Args:
        name: what the value is, e.g. "train loss" or "test_mse".
        value: the value to check.
        when: where in training it was seen, e.g. "at epoch 17".

    Raises:
        TrialDiverged: with the message ``diverged: <name> became <value> <when>``, e.g.
            ``diverged: train loss became nan at epoch 17``.
    """
    if not math.isfinite(value):
        raise TrialDiverged(diverged(name, value, when))
