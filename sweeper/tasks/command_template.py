"""Command templates of command tasks: ``["python", "train.py", "--lr", "{lr}"]`` with one
``{name}`` placeholder per parameter (and ``{seed}``, ``{trial_id}``), checked before anything runs
and rendered per trial so that every value round-trips."""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sweeper.errors import SweeperError

#: placeholders every command may use besides the parameters' names.
RESERVED = ("seed", "trial_id")


class CommandTemplateError(SweeperError):
    """A command template has a malformed placeholder (e.g. ``{lr:.3f}`` or an unclosed ``{``)."""


def placeholders(template: Sequence[str]) -> set[str]:
    """The names of the ``{name}`` placeholders in a command template.

    Raises:
        CommandTemplateError: an item has a placeholder that is not a plain ``{name}`` (format
            specs, conversions, attribute or index access, ``{}``) or unbalanced braces; the
            message names the item, e.g. ``command[3]: ...``.
    """
    names: set[str] = set()
    for index, item in enumerate(template):
        for _, name in _fields(item, index):
            if name is not None:
                names.add(name)
    return names


def template_problems(template: Sequence[str], known: Iterable[str]) -> list[str]:
    """Every problem of a command template, for a study validator to report at once.

    Args:
        template: the command, e.g. ``["python", "train.py", "--lr", "{lr}"]``.
        known: the study's parameter names (`RESERVED` names are always known).

    Returns:
        One line per problem, e.g. ``command[3]: unknown placeholder {lrr}; known: lr, seed,
        trial_id``; empty when the template is fine.
    """
    if not template:
        return ["command: must name a program (an empty list)"]
    valid = sorted(set(known) | set(RESERVED))
    problems: list[str] = []
    for index, item in enumerate(template):
        try:
            fields = _fields(item, index)
        except CommandTemplateError as exc:
            problems.append(str(exc))
            continue
        problems.extend(
            f"command[{index}]: unknown placeholder {{{name}}}; known: {', '.join(valid)}"
            for _, name in fields
            if name is not None and name not in valid
        )
    return problems


def render(template: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """The command with each placeholder replaced by `format_value` of its value.

    Raises:
        CommandTemplateError: a malformed placeholder, or one with no value.
    """
    argv: list[str] = []
    for index, item in enumerate(template):
        parts: list[str] = []
        for literal, name in _fields(item, index):
            parts.append(literal)
            if name is not None:
                if name not in values:
                    raise CommandTemplateError(f"command[{index}]: no value for {{{name}}}")
                parts.append(format_value(values[name]))
        argv.append("".join(parts))
    return argv


def format_value(value: Any) -> str:
    """A parameter value as a command-line argument: floats round-trip (``repr``), ints as
    digits, strings as they are, bools, None, lists and dicts as JSON (``true``, ``null``)."""
    if isinstance(value, bool) or value is None or isinstance(value, list | dict | tuple):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))  # numpy floats' repr is "np.float64(0.1)"
    return str(value)


def _fields(item: str, index: int) -> list[tuple[str, str | None]]:
    """(literal text, placeholder name or None) pairs of one template item."""
    try:
        parsed = list(string.Formatter().parse(item))
    except ValueError as exc:
        raise CommandTemplateError(f"command[{index}]: {item!r}: {exc}") from None
    fields: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None and (spec or conversion or not name.isidentifier()):
            raise CommandTemplateError(
                f"command[{index}]: {item!r}: only plain {{name}} placeholders are allowed "
                "(write {{ and }} for literal braces)"
            )
        fields.append((literal, name))
    return fields
