"""One lookup for every extension point: a name -> implementation table and its error.

Backends, execution modes, optimizers, samplers, pruners, output formats and tasks are each a
plain dict in the module that owns them; `choose` is how every one of them is read, so an
unknown name always fails the same way: ``unknown backend 'daks'; choose one of: dask, local``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from sweeper.errors import UnknownNameError

T = TypeVar("T")


def choose(kind: str, name: str, table: Mapping[str, T]) -> T:
    """The entry called `name` in `table`.

    Raises:
        UnknownNameError: ``unknown <kind> '<name>'; choose one of: <sorted names>``.
    """
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownNameError(unknown(kind, name, table)) from None


def unknown(kind: str, name: object, names: Iterable[str]) -> str:
    """The message of an unknown name, for callers that collect problems instead of raising."""
    choices = ", ".join(sorted(names)) or "(none)"
    return f"unknown {kind} {name!r}; choose one of: {choices}"


def check_name(kind: str, name: str, valid: Sequence[str]) -> str:
    """Return `name` if it is one of `valid` (a list of names rather than a table).

    Raises:
        UnknownNameError: ``unknown <kind> '<name>'; choose one of: <sorted valid names>``.
    """
    if name not in valid:
        choices = ", ".join(sorted(valid)) or "(none)"
        raise UnknownNameError(f"unknown {kind} '{name}'; choose one of: {choices}")
    return name
