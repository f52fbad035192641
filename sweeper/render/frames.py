"""Plain frames (trials, ranked configurations) in every format."""

from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd
from rich.table import Table
from rich.text import Text

from sweeper.registry import choose
from sweeper.render.text import (
    frame_cell,
    is_numeric,
    json_scalar,
    latex_escape,
    md_escape,
    one_line,
    pipe_table,
    rich_text,
    tabular,
    unwrapped,
)


def render_frame(df: pd.DataFrame, fmt: str, *, title: str | None = None) -> str:
    """Render a plain frame (trials, ranked configurations) in the given column order.

    Args:
        df: the frame; its index is not shown.
        fmt: one of `FORMATS`; ``rich`` gives the plain text of `rich_frame` at 120 columns.
        title: a line before the table in rich, Markdown (as text) and LaTeX (as a comment).

    Returns:
        The text, ending with a newline. Human formats write floats with 4 significant digits
        (`sweeper.render.text.set_precision` changes it) and missing
        values as a dash; CSV and JSON keep every digit and write missing values as empty and
        ``null``.

    Raises:
        UnknownNameError: `fmt` is not one of `FORMATS`.
    """
    return choose("format", fmt, _WRITERS)(df, title)


def _json_frame(df: pd.DataFrame, title: str | None) -> str:
    columns = [str(c) for c in df.columns]
    records = [
        {c: json_scalar(v) for c, v in zip(columns, row, strict=True)}
        for row in df.itertuples(index=False, name=None)
    ]
    return json.dumps(records, indent=2, allow_nan=False) + "\n"


def _typeset_frame(fmt: str, df: pd.DataFrame, title: str | None) -> str:
    """Markdown (a pipe table) or LaTeX (a booktabs tabular)."""
    columns = [str(c) for c in df.columns]
    body = [[frame_cell(v, fmt) for v in row] for row in df.itertuples(index=False, name=None)]
    right = [is_numeric(df.iloc[:, k]) for k in range(len(columns))]
    if fmt == "markdown":
        lines = [title, ""] if title else []
        header = [md_escape(c) for c in columns]
        return "\n".join([*lines, *pipe_table(header, body, right)]) + "\n"
    head = [f"% {one_line(title)}"] if title else []
    header = [latex_escape(c) for c in columns]
    return "\n".join([*head, *tabular(header, body, right)]) + "\n"


def rich_frame(df: pd.DataFrame, *, title: str | None = None) -> Table:
    """A plain frame as a rich table: numeric columns right-aligned, missing values as a dash."""
    table = Table(title=unwrapped(title) if title else None, title_justify="left")
    for k, column in enumerate(df.columns):
        numeric = is_numeric(df.iloc[:, k])
        table.add_column(Text(str(column)), justify="right" if numeric else "left")
    for row in df.itertuples(index=False, name=None):
        table.add_row(*(Text(frame_cell(v, "rich")) for v in row))
    return table


#: format -> writer of plain frames (see `sweeper.render.grid` for the other two tables).
_WRITERS: dict[str, Callable[[pd.DataFrame, str | None], str]] = {
    "csv": lambda df, title: str(df.to_csv(index=False, lineterminator="\n")),
    "json": _json_frame,
    "latex": lambda df, title: _typeset_frame("latex", df, title),
    "markdown": lambda df, title: _typeset_frame("markdown", df, title),
    "rich": lambda df, title: rich_text([rich_frame(df, title=title)]),
}
