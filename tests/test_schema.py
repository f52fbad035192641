"""The study file's JSON Schema (schema/study.schema.json): generated from the models, checked in
up to date, accepting every shipped study file and rejecting what `sweeper run` rejects."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from sweeper.errors import StudyFileError
from sweeper.spec import StudyFile
from sweeper.spec import schema as study_schema
from sweeper.study import Study

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
CHECKED_IN = ROOT / "schema" / "study.schema.json"
SHIPPED = sorted(
    [*ROOT.glob("studies/**/*.toml"), *ROOT.glob("sweeper/studies/*.toml")],
    key=lambda p: str(p.relative_to(ROOT)),
)


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(CHECKED_IN.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_checked_in_schema_is_the_generated_one() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == study_schema.render(), (
        "schema/study.schema.json is stale: python -m sweeper.spec.schema --write"
    )
    assert study_schema.main(["--check", str(CHECKED_IN)]) == 0


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "study.schema.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert study_schema.main(["--check", str(stale)]) == 1
    assert study_schema.main(["--check", str(tmp_path / "missing.json")]) == 1
    assert study_schema.main(["--write", str(stale)]) == 0
    assert study_schema.main(["--check", str(stale)]) == 0


def test_every_top_level_key_is_described() -> None:
    assert set(study_schema.DESCRIPTIONS) == set(StudyFile.model_fields)
    props = study_schema.generate()["properties"]
    assert set(props) == set(StudyFile.model_fields)
    assert all(prop.get("description") for prop in props.values())


def test_shipped_studies_are_found() -> None:
    names = {p.name for p in SHIPPED}
    assert {"obesity.toml", "ecg_small.toml", "quick.toml", "study.toml"} <= names
    assert len(SHIPPED) >= 20


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_study_validates(validator: Any, path: Path) -> None:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(raw)
    ]
    assert errors == []


OBESITY: dict[str, Any] = {
    "name": "s",
    "task": "obesity",
    "metric": "test_mse",
    "seeds": [0, 1],
    "fixed": {"epochs": 3},
    "space": {"lr": [0.001, 0.01], "optimizer": ["sgd", "adam"]},
}
TPE: dict[str, Any] = {
    **OBESITY,
    "kind": "tpe",
    "budget": 4,
    "space": {"lr": {"low": 1e-5, "high": 0.1, "log": True}, "optimizer": ["sgd", "adam"]},
}
COMMAND: dict[str, Any] = {
    "name": "c",
    "command": ["python", "train.py", "--lr", "{lr}"],
    "metric": "loss",
    "timeout": 60,
    "space": {"lr": [0.1, 0.2]},
}

GOOD: dict[str, dict[str, Any]] = {
    "grid": OBESITY,
    "tpe": TPE,
    "seed count": {**OBESITY, "seeds": 3},
    "integer range": {**TPE, "fixed": {}, "space": {"epochs": {"low": 2, "high": 6, "step": 2}}},
    "command": COMMAND,
}

BAD: dict[str, dict[str, Any]] = {
    "unknown key": {**OBESITY, "colour": "red"},
    "missing metric": {k: v for k, v in OBESITY.items() if k != "metric"},
    "wrong type": {**OBESITY, "seeds": "three"},
    "bad name": {**OBESITY, "name": "my study"},
    "unknown kind": {**OBESITY, "kind": "bayes"},
    "unknown pruner": {**TPE, "pruner": "early"},
    "unknown parameter": {**OBESITY, "fixed": {"colour": 1}},
    "unknown axis": {**OBESITY, "space": {"colour": [1, 2]}},
    "out of range": {**OBESITY, "space": {"lr": [0.001, -0.001]}},
    "wrong choice": {**OBESITY, "space": {"optimizer": ["sgd", "adamw"]}},
    "string for a number": {**OBESITY, "fixed": {"lr": "0.1"}},
    "float for an integer": {**OBESITY, "fixed": {"epochs": 2.5}},
    "empty axis": {**OBESITY, "space": {"lr": []}},
    "duplicate value": {**OBESITY, "space": {"lr": [0.1, 0.1]}},
    "duplicate seed": {**OBESITY, "seeds": [1, 1]},
    "no seeds": {**OBESITY, "seeds": 0},
    "unknown metric": {**OBESITY, "metric": "accuracy"},
    "task and command": {**OBESITY, "command": ["python", "x.py"]},
    "neither task nor command": {k: v for k, v in OBESITY.items() if k != "task"},
    "distribution in a grid": {**OBESITY, "space": {"lr": {"low": 0.1, "high": 1.0}}},
    "search key in a grid": {**OBESITY, "budget": 10},
    "search without a budget": {k: v for k, v in TPE.items() if k != "budget"},
    "distribution of a choice": {**TPE, "space": {"optimizer": {"low": 0, "high": 1}}},
    "unknown distribution key": {**TPE, "space": {"lr": {"low": 0.1, "high": 1.0, "base": 2}}},
    "timeout without a command": {**OBESITY, "timeout": 10},
    "params with a built-in task": {**OBESITY, "params": "train.py:Params"},
    "empty command": {**COMMAND, "command": []},
}


@pytest.mark.parametrize("case", GOOD)
def test_the_schema_accepts_what_the_loader_accepts(validator: Any, case: str) -> None:
    raw = GOOD[case]
    Study.from_dict(raw, label=case)  # the loader agrees
    assert list(validator.iter_errors(raw)) == []


@pytest.mark.parametrize("case", BAD)
def test_the_schema_rejects_what_the_loader_rejects(validator: Any, case: str) -> None:
    raw = BAD[case]
    with pytest.raises(StudyFileError):
        Study.from_dict(raw, label=case)
    assert not validator.is_valid(raw), f"the schema accepts a bad study ({case})"


def test_a_bad_study_file_is_rejected(validator: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "bad"\ntask = "obesity"\nmetric = "test_mse"\nseeds = "three"\ncolour = 1\n'
        "[space]\nlr = [-0.1]\n",
        encoding="utf-8",
    )
    errors = list(validator.iter_errors(tomllib.loads(bad.read_text(encoding="utf-8"))))
    assert len(errors) >= 3  # seeds, colour, lr: all at once, like the loader
    with pytest.raises(StudyFileError):
        Study.from_file(bad)
