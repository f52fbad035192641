"""The limits every study file is held to, whatever its task: size, nesting, finite numbers,
seeds. Each check adds ``<file>: <path>: <what> (got <value>)`` lines to `problems`.

They run before anything else looks at a study, so that a hostile or mistaken file (a link to
/dev/zero, ten thousand nested arrays, ``inf`` in a grid, ten million seeds) costs a second and
one line of error, never memory, a traceback or a half-written database.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

#: the largest study file read (bytes): a study is a page of TOML; this is a thousand pages.
MAX_FILE_BYTES = 1024 * 1024
#: deepest nesting of tables and arrays: a study needs 3 (``[space]``, a table, a list).
MAX_DEPTH = 32
#: seeds are stored in a 32-bit signed integer column (PostgreSQL's ``integer``).
SEED_LIMIT = 2**31
#: most replicate seeds a study may run (a count or a list); replicates are a handful.
MAX_SEEDS = 10_000


def too_deep(raw: Any, label: str, limit: int = MAX_DEPTH) -> str | None:
    """A problem line when `raw` nests tables or arrays deeper than `limit`, else None.

    Iterative, so it never meets Python's recursion limit itself.
    """
    stack: list[tuple[Any, int]] = [(raw, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return f"{label}: nested deeper than {limit} levels of tables and arrays"
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)
    return None


def non_finite(raw: Mapping[str, Any], label: str) -> list[str]:
    """One problem per ``inf`` or ``nan`` anywhere in a study table: no key gives them a
    meaning, and a trial's identity (canonical JSON) cannot hold them."""
    return [
        f"{label}: {path}: must be a finite number (got {value})"
        for path, value in _leaves(raw, "")
        if isinstance(value, float) and not math.isfinite(value)
    ]


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    # Depth is bounded by `too_deep`, checked first.
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path or "(top level)", value


def finite(value: Any) -> bool:
    """Whether `value` is no float ``inf`` or ``nan`` (other types are left to their checks)."""
    return not (isinstance(value, float) and not math.isfinite(value))
