"""The JSON Schema of a study file, generated from the models that validate one.

Editors validate TOML against a JSON Schema (Taplo, VS Code's Even Better TOML, JetBrains); the
checked-in copy is ``schema/study.schema.json``, and CI fails when it differs from what this
module generates. Regenerate it after changing the study file's models::

    python -m sweeper.spec.schema --write      # writes schema/study.schema.json
    python -m sweeper.spec.schema --check      # exit 1 when the checked-in file is stale
    python -m sweeper.spec.schema              # the schema on stdout

What it is made of: `sweeper.spec.StudyFile` (the top-level keys), `DistributionTable` (a
searched study's ranges), the sampler and pruner registries (``kind``, ``pruner``), the seed
limits of `sweeper.spec.bounds`, and each built-in task's ``Params`` model and metrics (the
``[fixed]`` and ``[space]`` keys and values, and ``metric``, when ``task`` names it). Rules
that span keys are written as conditions: exactly one of ``task`` and ``command``; a grid lists
its values and takes none of the search keys; a searched study needs a ``budget``; ``timeout``
only with a command, ``params`` only with a function task.

What it cannot say, and only ``sweeper run`` checks: a task's rules across its own parameters
(momentum with adam), a function task's own parameter model, ``inf``/``nan`` anywhere, a key
both fixed and swept, a distribution's ``low < floor < high``, a command's ``{placeholders}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweeper.samplers import KINDS, PRUNERS
from sweeper.spec import SEARCH_KEYS, StudyFile
from sweeper.spec.bounds import MAX_SEEDS, SEED_LIMIT
from sweeper.spec.values import DistributionTable
from sweeper.tasks import REGISTRY, get_task
from sweeper.tasks.base import params_model

__all__ = ["DESCRIPTIONS", "SCHEMA_PATH", "generate", "main", "render"]

#: where the checked-in schema lives in a source checkout.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schema" / "study.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
REF = "#/$defs/{model}"

#: the hover text of each top-level key (`tests/test_schema.py` checks that every key of
#: `StudyFile` has one).
DESCRIPTIONS: dict[str, str] = {
    "name": "The study's name, unique within a database: letters, digits, '_', '.', '-'.",
    "task": (
        'A built-in or installed task ("obesity", "ecg", "toy"), or your function as '
        '"train.py:train" (a file beside the study file) or "mypkg.module:train". '
        "Exactly one of task and command."
    ),
    "command": (
        'A program to run per trial, e.g. ["python", "train.py", "--lr", "{lr}", "--seed", '
        '"{seed}"]: it prints JSON lines (with "step": a curve point; the last without: the '
        "final metrics). Exactly one of task and command."
    ),
    "params": 'A function task\'s pydantic model of its parameters, e.g. "train.py:Params".',
    "prune_on": "The reported curve a pruner judges (your own tasks; default: the metric's name).",
    "timeout": "Seconds a trial of a command task may run before it fails.",
    "kind": '"grid" (every combination of [space]) or a sampler: "tpe", "random".',
    "metric": "The final metric that ranks configurations (one of the task's metrics).",
    "direction": "Whether a lower (minimize) or a higher (maximize) metric is better.",
    "description": "Free text, shown by `sweeper status` and in the report.",
    "seeds": (
        "Replicate seeds: a count (3 means seeds 0, 1, 2) or a list of distinct seeds. Every "
        "configuration runs once per seed."
    ),
    "fixed": "Task parameters held constant; the task's defaults fill the rest.",
    "space": (
        "The sweep axes, in table order: a list of values per parameter (a grid axis, or a "
        "searched study's categorical), or a distribution table { low, high, log, step, floor } "
        "(searched studies)."
    ),
    "budget": (
        "Searched studies: how many configurations the sampler proposes (each runs every seed)."
    ),
    "sampler_seed": (
        "Searched studies: seeds the sampler, so one worker's proposals are reproducible."
    ),
    "pruner": 'Searched studies: stop poor trials early, "median" or "halving".',
    "aggregate": "Searched studies: what the sampler is told of a configuration, over its seeds.",
    "ask": (
        'Searched studies: configurations one worker proposes at a time; "auto": as many as '
        "keep batched groups large while the budget takes at least 4 asks."
    ),
}


def generate() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a study file, as a dict (see the module docstring)."""
    defs: dict[str, Any] = {}
    top = _model_schema(StudyFile, defs)
    props: dict[str, Any] = top["properties"]
    for key, prop in props.items():
        prop.pop("title", None)
        _drop_null(prop)
        if key in DESCRIPTIONS:
            prop["description"] = DESCRIPTIONS[key]
    props["command"]["minItems"] = 1
    props["kind"]["enum"] = list(KINDS)
    props["pruner"]["enum"] = sorted(PRUNERS)
    props["seeds"] = {
        **props["seeds"],
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": MAX_SEEDS},
            {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "exclusiveMaximum": SEED_LIMIT},
                "minItems": 1,
                "maxItems": MAX_SEEDS,
                "uniqueItems": True,
            },
        ],
    }
    defs["DistributionTable"] = _model_schema(DistributionTable, defs)
    props["space"]["additionalProperties"] = {
        "anyOf": [_axis({}), {"$ref": REF.format(model="DistributionTable")}]
    }

    conditions: list[dict[str, Any]] = [
        {
            "oneOf": [{"required": ["task"]}, {"required": ["command"]}],
            "description": "Exactly one of task and command.",
        },
        {
            # `kind` absent means "grid": `properties` holds when the key is missing.
            "if": {"properties": {"kind": {"const": "grid"}}},
            "then": {
                "not": {"anyOf": [{"required": [key]} for key in SEARCH_KEYS]},
                "properties": {"space": {"additionalProperties": {"type": "array"}}},
            },
            "else": {"required": ["budget"]},
            "description": (
                "A grid lists its values and sets none of the search keys; a searched study "
                "needs a budget."
            ),
        },
        {
            "if": {"required": ["params"]},
            "then": {"required": ["task"], "properties": {"task": {"pattern": ":"}}},
            "description": 'params: only for a function task (task = "file.py:fn").',
        },
    ]
    for name in REGISTRY:
        conditions.append(_task_condition(name, defs))

    schema: dict[str, Any] = {
        "$schema": DIALECT,
        "title": "sweeper study file",
        "description": (
            "A sweeper study (TOML): a task or a command, the metric, seeds, [fixed] parameters "
            "and the [space] to sweep. Generated by `python -m sweeper.spec.schema` from the "
            "models that validate study files; `sweeper run` checks more (see "
            "docs/reference/study-file.md)."
        ),
        "type": "object",
        "properties": props,
        "required": top.get("required", []),
        "additionalProperties": False,
        "dependentRequired": {"timeout": ["command"]},
        "allOf": conditions,
        "$defs": dict(sorted(defs.items())),
    }
    return schema


def render(schema: dict[str, Any] | None = None) -> str:
    """The schema as the checked-in file holds it: indented JSON, a final newline."""
    return json.dumps(generate() if schema is None else schema, indent=2, ensure_ascii=False) + "\n"


def _model_schema(model: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """`model`'s JSON Schema, its own definitions hoisted into `defs`."""
    schema: dict[str, Any] = model.model_json_schema(ref_template=REF)
    for name, sub in schema.pop("$defs", {}).items():
        if defs.setdefault(name, sub) != sub:
            raise ValueError(f"two different models are both called {name!r}")
    return schema


def _drop_null(prop: dict[str, Any]) -> None:
    """``str | None`` -> string: TOML has no null, an optional key is simply left out."""
    options = prop.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del prop["anyOf"]
        if len(rest) == 1:
            prop.update(rest[0])
        else:
            prop["anyOf"] = rest
        if prop.get("default", ...) is None:
            del prop["default"]


def _axis(values: dict[str, Any]) -> dict[str, Any]:
    """A list of distinct values, each matching `values`."""
    return {"type": "array", "items": values, "minItems": 1, "uniqueItems": True}


def _task_condition(name: str, defs: dict[str, Any]) -> dict[str, Any]:
    """When ``task = name``: its metrics, and its parameter model for [fixed] and [space]."""
    task = get_task(name)
    then: dict[str, Any] = {"not": {"required": ["params"]}, "properties": {}}
    if task.metrics:
        then["properties"]["metric"] = {"enum": list(task.metrics)}
    model = params_model(task)
    if model is not None:
        params = _model_schema(model, defs)
        fields: dict[str, Any] = params.get("properties", {})
        defs[f"{name}.params"] = params
        then["properties"]["fixed"] = {"$ref": REF.format(model=f"{name}.params")}
        space: dict[str, Any] = {}
        for key, field in fields.items():
            value = {k: v for k, v in field.items() if k not in ("default", "title")}
            options: list[dict[str, Any]] = [_axis(value)]
            if field.get("type") in ("integer", "number"):
                # allOf, not keywords beside $ref: editors on draft 7 would ignore those.
                bounds = {"properties": {"low": value, "high": value}}
                options.append({"allOf": [{"$ref": REF.format(model="DistributionTable")}, bounds]})
            space[key] = {"anyOf": options} if len(options) > 1 else options[0]
        then["properties"]["space"] = {"properties": space, "additionalProperties": False}
    return {
        "if": {"properties": {"task": {"const": name}}, "required": ["task"]},
        "then": then,
        "description": f"task = {name!r}: its metrics and parameters.",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sweeper.spec.schema [--write | --check] [PATH]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.spec.schema",
        description="The JSON Schema of sweeper study files, generated from their models.",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write it to PATH")
    action.add_argument(
        "--check", action="store_true", help="exit 1 when PATH differs from the generated schema"
    )
    parser.add_argument(
        "path", nargs="?", type=Path, default=SCHEMA_PATH, help=f"default: {SCHEMA_PATH}"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.path.parent.mkdir(parents=True, exist_ok=True)
        args.path.write_text(text, encoding="utf-8")
        sys.stderr.write(f"wrote {args.path}\n")
        return 0
    if args.check:
        try:
            current = args.path.read_text(encoding="utf-8")
        except OSError as exc:
            sys.stderr.write(f"{args.path}: cannot read: {exc.strerror or exc}\n")
            return 1
        if current != text:
            sys.stderr.write(
                f"{args.path} differs from the study file's models: regenerate it with "
                "`python -m sweeper.spec.schema --write`\n"
            )
            return 1
        sys.stderr.write(f"{args.path} is up to date\n")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
