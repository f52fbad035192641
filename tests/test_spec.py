"""Study-file validation: every problem at once, with its path, in exact words."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.errors import StudyFileError
from sweeper.study import Study, conflicting_keys, load_study, parse_study
from sweeper.tasks import REGISTRY

REPO = Path(__file__).resolve().parents[1]


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "x.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StudyFileError) as info:
        load_study(path)
    return [p.replace(str(path), "x.toml") for p in info.value.problems]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """
name = "bad name!"
task = "toy"
metric = "los"
colour = "blue"
seeds = [0, -1, 0]

[fixed]
epochs = 0
sleep = "0.1"
z = 1

[space]
x = [1.0, "a", 1]
y = []
epochs = [1, 2]
"""
    assert problems(tmp_path, text) == [
        "x.toml: name: must use only letters, digits, '_', '.', '-' (got 'bad name!')",
        "x.toml: colour: unknown key",
        "x.toml: fixed.epochs: must be >= 1 (got 0)",
        "x.toml: fixed.sleep: must be a number (got '0.1')",
        "x.toml: fixed.z: unknown parameter; valid: x, y, epochs, sleep, fail",
        "x.toml: space.x[1]: must be a number (got 'a')",
        "x.toml: space.x[2]: duplicate value (got 1)",
        "x.toml: space.y: must not be empty (got [])",
        "x.toml: space.epochs: also set in [fixed]; keep one of them",
        "x.toml: metric: unknown metric 'los' for task 'toy'; choose one of: loss, final_epoch",
        "x.toml: seeds[1]: must be an integer >= 0 (got -1)",
        "x.toml: seeds[2]: duplicate seed (got 0)",
    ]


def test_obesity_ranges_and_choices(tmp_path: Path) -> None:
    text = """
name = "o"
task = "obesity"
metric = "test_mse"
direction = "down"
[space]
optimizer = ["sgd", "adamw"]
lr = [1e-3, 1e-2, -0.001]
"""
    assert problems(tmp_path, text) == [
        "x.toml: direction: must be 'minimize' or 'maximize' (got 'down')",
        "x.toml: space.optimizer[1]: must be 'sgd' or 'adam' (got 'adamw')",
        "x.toml: space.lr[2]: must be > 0 (got -0.001)",
    ]


def test_missing_fields_unknown_task_and_bad_toml(tmp_path: Path) -> None:
    assert problems(tmp_path, 'task = "resnet"\n') == [
        "x.toml: name: required",
        "x.toml: metric: required",
        f"x.toml: task: unknown task 'resnet'; choose one of: {', '.join(sorted(REGISTRY))}",
    ]
    assert problems(tmp_path, "name = \n") == [
        "x.toml: invalid TOML: Invalid value (at line 1, column 8)"
    ]
    with pytest.raises(StudyFileError, match=r"^nowhere.toml: no such file$"):
        load_study("nowhere.toml")


def test_values_are_normalised_and_defaults_resolved() -> None:
    study = parse_study(
        {"name": "t", "task": "toy", "metric": "loss", "seeds": 3, "space": {"x": [0, 1.5]}},
        "t.toml",
    )
    assert study.axes == {"x": [0.0, 1.5]}
    assert isinstance(study.axes["x"][0], float)
    assert study.seeds == (0, 1, 2)
    assert study.fixed == {"y": 0.0, "epochs": 3, "sleep": 0.0, "fail": False}
    assert Study.from_json(study.to_json()) == study


def test_axis_order_survives_the_database_round_trip() -> None:
    raw = {"name": "t", "task": "toy", "metric": "loss", "space": {"y": [1.0], "x": [0.0]}}
    study = parse_study(raw, "t.toml")
    assert list(Study.from_json(study.to_json()).axes) == ["y", "x"]


def test_conflicting_keys() -> None:
    def s(fixed: dict[str, object], space: dict[str, object]) -> Study:
        raw = {"name": "t", "task": "toy", "metric": "loss", "fixed": fixed, "space": space}
        return parse_study(raw, "t.toml")

    base = s({"epochs": 2}, {"x": [0.0, 1.0]})
    assert conflicting_keys(base, s({"epochs": 2}, {"x": [0.0, 1.0, 2.0]})) == []
    assert conflicting_keys(base, s({"epochs": 3}, {"x": [0.0]})) == ["epochs"]
    # A fixed value may become an axis that keeps it (y defaults to 0.0)...
    assert conflicting_keys(base, s({"epochs": 2}, {"x": [0.0], "y": [0.0, 1.0]})) == []
    # ...but not one that drops it.
    assert conflicting_keys(base, s({"epochs": 2}, {"x": [0.0], "y": [1.0]})) == ["y"]
    # An axis may be pinned to one of its values, not to a new one.
    assert conflicting_keys(base, s({"epochs": 2, "x": 1.0}, {})) == []
    assert conflicting_keys(base, s({"epochs": 2, "x": 5.0}, {})) == ["x"]


@pytest.mark.parametrize(
    ("file", "trials"),
    [("obesity.toml", 576), ("obesity_sam200.toml", 72), ("quick.toml", None)],
)
def test_shipped_studies_are_valid(file: str, trials: int | None) -> None:
    study = load_study(REPO / "studies" / file)
    n = len(study.seeds)
    for values in study.axes.values():
        n *= len(values)
    if trials is not None:
        assert n == trials
