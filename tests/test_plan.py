"""Trial identity: stable keys (pinned), grids in file order, seeds innermost."""

from __future__ import annotations

from sweeper.canonical import canonical_json
from sweeper.plan import grid, trial_key
from sweeper.study import parse_study
from sweeper.tasks import get_task


def test_golden_trial_keys() -> None:
    # These keys are stored in users' databases: changing them would re-run every study.
    assert trial_key("toy", {"x": 1.0, "y": 0.0}, 0) == "d314b07dc41b69fc4cb183aa554f6dde"
    assert (
        trial_key("toy", {"y": 0.0, "x": 1.0}, 0) == "d314b07dc41b69fc4cb183aa554f6dde"
    )  # order does not matter
    assert trial_key("toy", {"x": 1.0, "y": 0.0}, 1) == "6c5391e77e8d07ea83ed03479f492281"
    params = {"optimizer": "adam", "lr": 0.001, "weight_decay": 0.0, "sam_rho": 0.05}
    assert trial_key("obesity", params, 2) == "fb4b48bbb2836dbd33888e053b81bb0a"


def test_int_and_float_are_different_json_but_normalised_by_the_spec() -> None:
    assert canonical_json({"x": 0}) != canonical_json({"x": 0.0})
    a = parse_study({"name": "a", "task": "toy", "metric": "loss", "space": {"x": [0]}}, "a")
    b = parse_study({"name": "a", "task": "toy", "metric": "loss", "space": {"x": [0.0]}}, "b")
    group = get_task("toy").group_key
    assert [t.key for t in grid(a, group)] == [t.key for t in grid(b, group)]


def test_grid_order_and_size() -> None:
    study = parse_study(
        {
            "name": "g",
            "task": "toy",
            "metric": "loss",
            "seeds": [5, 7],
            "space": {"x": [0.0, 1.0], "y": [2.0, 3.0, 4.0]},
        },
        "g",
    )
    trials = grid(study, get_task("toy").group_key)
    assert len(trials) == 12 and len({t.key for t in trials}) == 12
    assert [(t.params["x"], t.params["y"], t.seed) for t in trials[:4]] == [
        (0.0, 2.0, 5),
        (0.0, 2.0, 7),
        (0.0, 3.0, 5),
        (0.0, 3.0, 7),
    ]
    assert all(t.params["epochs"] == 3 for t in trials)  # defaults are part of every trial
