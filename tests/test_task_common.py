"""The helpers every built-in task shares: seeds, divergence, parameter validation, group keys."""

from __future__ import annotations

import pytest

from sweeper.errors import StudyFileError
from sweeper.seeds import derive_seed
from sweeper.tasks.common import TaskParams, diverged, shared_key, validate_params


def test_derive_seed_golden_values_of_every_task() -> None:
    # Stored results depend on these: obesity, ECG and toy seeds must never change.
    assert derive_seed(0, "init") == 3672123365  # obesity: sha256("init:0")
    assert derive_seed(0, "batches") == 282030614
    assert derive_seed(0, "init", "ecg") == 3625274257  # ECG: sha256("ecg:init:0")
    assert derive_seed(3, "batches", "ecg") == 2683574556
    assert derive_seed(0, "split:Chapman", "ecg") == 1808241671
    assert derive_seed(0, "toy") == 3048671237  # toy: sha256("toy:0")
    assert derive_seed(5, "toy") == 2766105651


def test_diverged_wording() -> None:
    assert diverged("train loss", float("nan"), "at epoch 17") == (
        "diverged: train loss became nan at epoch 17"
    )


class _Params(TaskParams):
    a: int = 1
    b: float = 0.5


def test_validate_params_reports_every_problem_with_the_values() -> None:
    assert validate_params(_Params, {"a": 2}) == _Params(a=2)
    with pytest.raises(StudyFileError) as info:
        validate_params(_Params, {"a": "x", "c": 1})
    assert info.value.problems == [
        'parameters {"a":"x","c":1}: Input should be a valid integer, unable to parse string '
        "as an integer",
        'parameters {"a":"x","c":1}: Extra inputs are not permitted',
    ]


def test_shared_key_leaves_out_what_members_vary_and_adds_derived_values() -> None:
    assert shared_key(_Params(a=2, b=0.1), vary=["b"], flag=True) == '{"a":2,"flag":true}'
    assert shared_key(_Params()) == '{"a":1,"b":0.5}'
