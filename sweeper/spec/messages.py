"""One pydantic error as a line a user reads: ``space.lr[2]: must be > 0 (got -0.001)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_core import ErrorDetails


def describe(err: ErrorDetails) -> str:
    """`space.lr[2]: must be > 0 (got -0.001)` from one pydantic error."""
    return f"{path(err['loc'])}: {message(err)}"


def path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def message(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx = err.get("ctx", {})
    got = f" (got {show(err.get('input'))})"
    bounds = {
        "greater_than": ("gt", ">"),
        "greater_than_equal": ("ge", ">="),
        "less_than": ("lt", "<"),
        "less_than_equal": ("le", "<="),
    }
    if kind in bounds:
        name, op = bounds[kind]
        return f"must be {op} {show(ctx.get(name))}{got}"
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}{got}"
    if kind == "too_short":
        return f"must not be empty{got}"
    if kind == "string_pattern_mismatch":
        return f"must use only letters, digits, '_', '.', '-'{got}"
    simple = {
        "float_type": "must be a number",
        "int_type": "must be an integer",
        "bool_type": "must be true or false",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "dict_type": "must be a table",
    }
    if kind in simple:
        return simple[kind] + got
    msg = err["msg"].removeprefix("Value error, ")  # a validator's own ValueError
    return msg[:1].lower() + msg[1:] + got


def show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
