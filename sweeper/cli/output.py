"""What the query commands share: opening the store, reading a study's trials, filtering them,
and printing a frame in the chosen format."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from sweeper.cli.app import out
from sweeper.errors import SweeperError

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.store import Store, StudyInfo
    from sweeper.study import Study


def open_store(db: str | None) -> Store:
    """The database of ``--db`` ($SWEEPER_DB, else results.db here), for reading."""
    from sweeper.store import Store, resolve_url

    return Store(resolve_url(db))


def param_names(study: Study) -> list[str]:
    """The parameters that vary between a study's configurations."""
    return list(study.search) if study.searched else list(study.axes)


def metric_frame(store: Store, info: StudyInfo) -> pd.DataFrame:
    """The study's trials with only its own metric, read from the indexed `value` column."""
    frame = store.frame(info.id, metrics=False, bookkeeping=False)
    frame[info.study.metric] = frame["value"]
    return frame


def filter_trials(frame: pd.DataFrame, where: list[str], state: str | None) -> pd.DataFrame:
    """The rows matching every ``KEY=VALUE`` of `where` and, when given, in `state`."""
    for clause in where:
        key, sep, raw = clause.partition("=")
        if not sep or not key:
            raise SweeperError(f"--where {clause!r}: write KEY=VALUE, e.g. --where optimizer=adam")
        check_column(frame, key, "--where")
        value = _parse_value(raw)
        column = frame[key]
        if isinstance(value, float | int) and not isinstance(value, bool):
            frame = frame[column.astype(float) == float(value)]
        else:
            frame = frame[column.astype(str) == str(value)]
    if state is not None:
        from sweeper.errors import UnknownNameError
        from sweeper.registry import unknown
        from sweeper.store import STATES

        if state not in STATES:
            raise UnknownNameError(unknown("state", state, STATES))
        frame = frame[frame["state"] == state]
    return frame


def check_column(frame: pd.DataFrame, key: str, option: str) -> None:
    if key not in frame.columns:
        raise SweeperError(
            f"{option} {key!r}: no such column; choose one of: {', '.join(map(str, frame.columns))}"
        )


def print_frame(frame: pd.DataFrame, fmt: str) -> None:
    from sweeper import render

    if fmt == "rich":
        out.print(render.rich_frame(frame))
    else:
        sys.stdout.write(render.render_frame(frame, fmt))


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{seconds:.1f}s"


def short(value: Any) -> str:
    """A parameter value for one line of text: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _parse_value(raw: str) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return value if isinstance(value, int | float | bool) else raw
