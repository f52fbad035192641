"""Plans: which trials a study holds, each with a stable identity.

A trial's key is the hash of canonical JSON of its task, full parameters and seed, so the same
trial always gets the same key and enqueueing it twice is a no-op (DomainBed's job hash).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sweeper.canonical import canonical_json
from sweeper.study import Study


@dataclass(frozen=True)
class PlannedTrial:
    """A trial to enqueue: its key, full parameters, seed, and batching group."""

    key: str
    params: dict[str, Any]
    seed: int
    group: str


def trial_key(task: str, params: Mapping[str, Any], seed: int) -> str:
    """The identity of a trial: 32 hex digits of sha256 over task, parameters and seed."""
    text = canonical_json({"task": task, "params": dict(params), "seed": seed})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def grid(study: Study, group_key: Callable[[Mapping[str, Any]], str]) -> list[PlannedTrial]:
    """Every combination of the study's axes, once per seed, in file order (seeds innermost).

    Args:
        study: a validated study.
        group_key: the task's `group_key`, stored with each trial so that a batched executor can
            claim compatible trials together.
    """
    names = list(study.axes)
    trials: list[PlannedTrial] = []
    for values in itertools.product(*(study.axes[name] for name in names)):
        params = {**study.fixed, **dict(zip(names, values, strict=True))}
        group = group_key(params)
        for seed in study.seeds:
            trials.append(PlannedTrial(trial_key(study.task, params, seed), params, seed, group))
    return trials
