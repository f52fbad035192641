"""MkDocs hook: the built-in tasks' parameters, generated from their models at build time.

`on_page_markdown` replaces the marker ``<!-- task-parameters -->`` (in
docs/reference/study-file.md) with `task_parameters()`: for each task of
``sweeper.tasks.REGISTRY``, its metrics and a table of its parameters (type, default, allowed
values) taken from the task's pydantic ``Params`` model, the same model that validates
``[fixed]`` and ``[space]`` and that the JSON Schema is generated from.
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "<!-- task-parameters -->"

__all__ = ["MARKER", "on_page_markdown", "task_parameters"]


def on_page_markdown(markdown: str, page: Any = None, **kwargs: Any) -> str:
    """MkDocs event: put the generated tables where the page has the marker."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, task_parameters())


def task_parameters() -> str:
    """One section per built-in task: what it reports, and its parameters."""
    from sweeper.tasks import REGISTRY, get_task
    from sweeper.tasks.base import params_model

    lines: list[str] = []
    for name in REGISTRY:
        task = get_task(name)
        lines += [f'### `task = "{name}"`', ""]
        metrics = ", ".join(f"`{m}`" for m in task.metrics)
        lines.append(f"- metrics: {metrics}")
        curve = getattr(task, "validation_curve", None)
        lines.append(f"- pruners judge its per-epoch `{curve}` curve" if curve else "- no pruning")
        batching = getattr(task, "supports_batching", False)
        lines += [f"- batched executor: {'yes' if batching else 'no (one model per trial)'}", ""]
        model = params_model(task)
        if model is None:
            continue
        schema = model.model_json_schema()
        lines += ["| parameter | type | default | allowed |", "|---|---|---|---|"]
        for key, prop in schema.get("properties", {}).items():
            lines.append(
                f"| `{key}` | {_type(prop)} | {_value(prop.get('default'))} | {_allowed(prop)} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _type(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "choice"
    kind = prop.get("type")
    if isinstance(kind, str):
        return {"number": "float", "integer": "integer", "boolean": "bool"}.get(kind, kind)
    options = prop.get("anyOf", [])
    return " or ".join(_type(o) for o in options) if options else "any"


def _value(value: Any) -> str:
    if value is None:
        return ""
    return f"`{json.dumps(value)}`"


def _allowed(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return ", ".join(_value(v) for v in prop["enum"])
    bounds = [
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ]
    return ", ".join(f"`{op} {prop[key]}`" for key, op in bounds if key in prop)
