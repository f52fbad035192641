"""Text for reports: grid tables and plain frames as rich tables, Markdown, CSV, LaTeX or JSON.

Human formats (rich, Markdown, LaTeX) round metric values to three decimals and mark the best
cell; machine formats (CSV, JSON) keep every digit, so that a re-read gives back the numbers
`sweeper.report` computed, and carry the best cell as a boolean or an index.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from sweeper.report import DOMAIN_AVERAGE, DomainTable, GridTable, check_name

FORMATS = ("rich", "markdown", "csv", "latex", "json")

_DASH = {"rich": "—", "markdown": "—", "csv": "", "latex": "--", "json": "null"}
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # OT1 text fonts print other glyphs for these three
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}
_RICH_WIDTH = 120


def check_format(fmt: str) -> str:
    """Return `fmt` if it is one of `FORMATS`.

    Raises:
        UnknownNameError: ``unknown format 'x'; choose one of: csv, json, latex, markdown, rich``.
    """
    return check_name("format", fmt, FORMATS)


def format_axis_value(value: Any) -> str:
    """An axis value as a compact label: floats with ``:g`` (``0``, ``0.0001``, ``3e-05``)."""
    if isinstance(value, float | np.floating) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value)


def format_value(value: float | None, agg: str, fmt: str = "markdown") -> str:
    """One aggregate as cell text.

    Args:
        value: the aggregate, or None where undefined.
        agg: the aggregate it is; counts are written as integers.
        fmt: the output format; decides the text of None and the precision.

    Returns:
        Human formats: three decimals (``0.512``; ``:.3g`` below 0.0005 so small values do not
        read as zero), None as ``—`` (rich, Markdown) or ``--`` (LaTeX). CSV: every digit
        (``repr``), None as the empty string. JSON: a JSON number, None as ``null``.

    Raises:
        UnknownNameError: `fmt` is not one of `FORMATS`.
    """
    check_format(fmt)
    if value is None or (fmt in ("csv", "json") and not math.isfinite(value)):
        return _DASH[fmt]
    if agg == "count":
        return str(int(value))
    if fmt == "csv":
        return repr(float(value))
    if fmt == "json":
        return json.dumps(float(value))
    if value != 0 and abs(value) < 0.0005:
        return f"{value:.3g}"
    return f"{value:.3f}"


def group_label(table: GridTable) -> str:
    """The table's group as ``optimizer=adam, sam_rho=0.02``; empty without groups."""
    return _group_text(table.group)


def grid_title(study: str, tables: Sequence[GridTable]) -> str:
    """A title for a set of grid tables.

    Returns:
        e.g. ``obesity: test_mse, mean over seeds (expected 3 per cell)``; pooled axes are named
        after the seeds (``over seeds and epochs``). Just ``study`` when `tables` is empty.
    """
    if not tables:
        return study
    first = tables[0]
    over = " and ".join(["seeds", *first.pooled])
    return f"{study}: {first.metric}, {first.agg} over {over} (expected {first.expected} per cell)"


def render_tables(tables: Sequence[GridTable], fmt: str, *, title: str) -> str:
    """Render grid tables as one text.

    Args:
        tables: from `sweeper.report.grid_tables`.
        fmt: one of `FORMATS`; ``rich`` gives the plain text of `rich_tables` at 120 columns.
        title: the report's title (see `grid_title`); CSV and JSON leave it out, to stay
            machine-readable.

    Returns:
        Markdown: the title line, then per table a ``### <group>`` heading and a pipe table,
        blocks separated by one blank line. CSV: a tidy table, one line per cell, with the group
        axes, the row axis, the column axis, ``value``, ``n``, ``expected``, ``best``. LaTeX: the
        title as a comment, then one booktabs ``table`` per grid table. JSON: a list of table
        objects. Every text ends with a newline.

    Raises:
        UnknownNameError: `fmt` is not one of `FORMATS`.
    """
    check_format(fmt)
    if fmt == "rich":
        return _rich_text(rich_tables(tables, title=title))
    if fmt == "markdown":
        return _markdown_tables(tables, title)
    if fmt == "csv":
        return _csv_tables(tables)
    if fmt == "latex":
        return _latex_tables(tables, title)
    return _json_tables(tables)


def rich_tables(tables: Sequence[GridTable], *, title: str) -> list[Table]:
    """Grid tables as rich tables, for a console to print.

    Each table is titled with its group (or `title` when there are no groups); the last one is
    captioned with `title` and the marking rule, so a long run of tables states them once, at
    the end where the eye lands. The best cell is bold green.
    """
    out = []
    for n, table in enumerate(tables):
        label = group_label(table)
        caption = f"{title}; best cell in bold, marked *" if label else "best cell marked *"
        rich = _rich_shell(label or title, caption if n == len(tables) - 1 else None)
        rich.add_column(Text(_corner(table)), justify="left")
        for col in table.cols:
            rich.add_column(Text(format_axis_value(col)), justify="right")
        for i, row in enumerate(table.rows):
            cells: list[RenderableType] = [Text(format_axis_value(row))]
            for j in range(len(table.cols)):
                value, suffix = _cell_parts(table, i, j, "rich")
                cells.append(_marked(value, suffix, best=table.best == (i, j)))
            rich.add_row(*cells)
        out.append(rich)
    return out


def render_frame(df: pd.DataFrame, fmt: str, *, title: str | None = None) -> str:
    """Render a plain frame (trials, ranked configurations) in the given column order.

    Args:
        df: the frame; its index is not shown.
        fmt: one of `FORMATS`; ``rich`` gives the plain text of `rich_frame` at 120 columns.
        title: a line before the table in rich, Markdown (as text) and LaTeX (as a comment).

    Returns:
        The text, ending with a newline. Human formats write floats with ``:g`` and missing
        values as a dash; CSV and JSON keep every digit and write missing values as empty and
        ``null``.

    Raises:
        UnknownNameError: `fmt` is not one of `FORMATS`.
    """
    check_format(fmt)
    columns = [str(c) for c in df.columns]
    if fmt == "rich":
        return _rich_text([rich_frame(df, title=title)])
    if fmt == "csv":
        return str(df.to_csv(index=False, lineterminator="\n"))
    if fmt == "json":
        records = [
            {c: _json_scalar(v) for c, v in zip(columns, row, strict=True)}
            for row in df.itertuples(index=False, name=None)
        ]
        return json.dumps(records, indent=2, allow_nan=False) + "\n"
    body = [[_frame_cell(v, fmt) for v in row] for row in df.itertuples(index=False, name=None)]
    right = [_is_numeric(df.iloc[:, k]) for k in range(len(columns))]
    if fmt == "markdown":
        lines = [title, ""] if title else []
        header = [_md_escape(c) for c in columns]
        return "\n".join([*lines, *_pipe_table(header, body, right)]) + "\n"
    head = [f"% {_one_line(title)}"] if title else []
    header = [_latex_escape(c) for c in columns]
    return "\n".join([*head, *_tabular(header, body, right)]) + "\n"


def rich_frame(df: pd.DataFrame, *, title: str | None = None) -> Table:
    """A plain frame as a rich table: numeric columns right-aligned, missing values as a dash."""
    table = Table(title=_unwrapped(title) if title else None, title_justify="left")
    for k, column in enumerate(df.columns):
        numeric = _is_numeric(df.iloc[:, k])
        table.add_column(Text(str(column)), justify="right" if numeric else "left")
    for row in df.itertuples(index=False, name=None):
        table.add_row(*(Text(_frame_cell(v, "rich")) for v in row))
    return table


# -- per-domain tables (`sweeper table NAME --layout domains`) ----------------------------------


def render_domain_tables(
    tables: Sequence[DomainTable], fmt: str, *, title: str, sem: bool = False
) -> str:
    """Render per-domain tables as one text.

    Args:
        tables: from `sweeper.report.domain_tables`.
        fmt: one of `FORMATS`; ``rich`` gives the plain text of `rich_domain_tables`.
        title: the report's title; CSV and JSON leave it out.
        sem: show ``mean ± sem`` in the human formats (CSV and JSON always carry the sem).

    Returns:
        Markdown: the title, then per table an optional ``### <group>`` heading and a pipe
        table whose columns are the domains and ``Avg``; the best row of each column in bold.
        CSV: one line per (row, column) with the group axes, the row axis, the domain axis
        (``Avg`` for the average), ``mean``, ``sem``, ``n``, ``expected``, ``best``. LaTeX: one
        booktabs table per table. JSON: a list of table objects. Every text ends with a newline.

    Raises:
        UnknownNameError: `fmt` is not one of `FORMATS`.
    """
    check_format(fmt)
    if fmt == "rich":
        return _rich_text(rich_domain_tables(tables, title=title, sem=sem))
    if fmt == "csv":
        return _csv_domain_tables(tables)
    if fmt == "json":
        return _json_domain_tables(tables)
    latex_head = f"% {_one_line(title)}\n% needs \\usepackage{{booktabs}}"
    blocks = [title if fmt == "markdown" else latex_head]
    for table in tables:
        label = _group_text(table.group)
        escape = _md_escape if fmt == "markdown" else _latex_escape
        header = [escape(_domain_corner(table))]
        header += [escape(format_axis_value(d)) for d in table.domains] + [DOMAIN_AVERAGE]
        body = []
        for i, row in enumerate(table.rows):
            cells = [escape(format_axis_value(row))]
            for j in range(len(table.domains) + 1):
                value, suffix = _domain_cell_parts(table, i, j, fmt, sem)
                if table.best[j] == i:
                    value = f"**{value}**" if fmt == "markdown" else f"\\textbf{{{value}}}"
                cells.append(value + suffix)
            body.append(cells)
        right = [False] + [True] * (len(table.domains) + 1)
        if fmt == "markdown":
            if label:
                blocks.append(f"### {_md_escape(label)}")
            blocks.append("\n".join(_pipe_table(header, body, right)))
        else:
            caption = _latex_escape(label or title)
            lines = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{caption}}}"]
            lines += _tabular(header, body, right)
            lines.append("\\end{table}")
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def rich_domain_tables(
    tables: Sequence[DomainTable], *, title: str, sem: bool = False
) -> list[Table]:
    """Per-domain tables as rich tables; the best row of each column bold green, marked *.

    Each table is titled with its group, or with `title` when there are no groups; the last
    one is captioned with `title` and the marking rule.
    """
    out = []
    for n, table in enumerate(tables):
        label = _group_text(table.group)
        caption = f"{title}; best per column in bold, marked *" if label else "best per column *"
        rich = _rich_shell(label or title, caption if n == len(tables) - 1 else None)
        rich.add_column(Text(_domain_corner(table)), justify="left")
        for domain in table.domains:
            rich.add_column(Text(format_axis_value(domain)), justify="right")
        rich.add_column(Text(DOMAIN_AVERAGE), justify="right")
        for i, row in enumerate(table.rows):
            cells: list[RenderableType] = [Text(format_axis_value(row))]
            for j in range(len(table.domains) + 1):
                value, suffix = _domain_cell_parts(table, i, j, "rich", sem)
                cells.append(_marked(value, suffix, best=table.best[j] == i))
            rich.add_row(*cells)
        out.append(rich)
    return out


def _marked(value: str, suffix: str, *, best: bool) -> Text:
    """A rich cell: the best one bold green and starred (the star shows without colour too)."""
    text = Text(value, style="bold green" if best else "")
    text.append(" *" if best else "")
    text.append(suffix)
    return text


def _rich_shell(title: str, caption: str | None) -> Table:
    """An empty rich table with a left-justified, unwrapped title and (optional) caption."""
    return Table(
        title=_unwrapped(title),
        caption=_unwrapped(caption) if caption is not None else None,
        title_justify="left",
        caption_justify="left",
    )


def _group_text(group: dict[str, Any]) -> str:
    """``key=value, ...`` of a table's group; empty without groups."""
    return ", ".join(f"{k}={format_axis_value(v)}" for k, v in group.items())


def _domain_corner(table: DomainTable) -> str:
    return f"{table.row_axis} \\ {table.col_axis}"


def _domain_cell_parts(table: DomainTable, i: int, j: int, fmt: str, sem: bool) -> tuple[str, str]:
    """Column j's cell of row i (j == len(domains) is Avg) as value text and an n/e suffix."""
    if j == len(table.domains):
        mean, err, suffix = table.avg[i], table.avg_sem[i], ""
    else:
        mean, err = table.means[i][j], table.sems[i][j]
        n = table.counts[i][j]
        suffix = f" ({n}/{table.expected})" if 0 < n < table.expected else ""
    value = format_value(mean, "mean", fmt)
    if sem and mean is not None and err is not None:
        plus_minus = "$\\pm$" if fmt == "latex" else "±"
        value = f"{value} {plus_minus} {format_value(err, 'sem', fmt)}"
    return value, suffix


def _csv_domain_tables(tables: Sequence[DomainTable]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if tables:
        first = tables[0]
        head = [*first.group, first.row_axis, first.col_axis]
        writer.writerow([*head, "mean", "sem", "n", "expected", "best"])
    for table in tables:
        group = [_csv_scalar(v) for v in table.group.values()]
        n_domains = len(table.domains)
        for i, row in enumerate(table.rows):
            for j, domain in enumerate([*table.domains, DOMAIN_AVERAGE]):
                if j < n_domains:
                    mean, err = table.means[i][j], table.sems[i][j]
                    n, expected = table.counts[i][j], table.expected
                else:
                    mean, err = table.avg[i], table.avg_sem[i]
                    n, expected = sum(table.counts[i]), table.expected * n_domains
                writer.writerow(
                    [
                        *group,
                        _csv_scalar(row),
                        _csv_scalar(domain),
                        format_value(mean, "mean", "csv"),
                        format_value(err, "sem", "csv"),
                        str(n),
                        str(expected),
                        "true" if table.best[j] == i else "false",
                    ]
                )
    return buffer.getvalue()


def _json_domain_tables(tables: Sequence[DomainTable]) -> str:
    out = [
        {
            "group": {k: _json_scalar(v) for k, v in table.group.items()},
            "row_axis": table.row_axis,
            "col_axis": table.col_axis,
            "rows": [_json_scalar(v) for v in table.rows],
            "cols": [*(_json_scalar(v) for v in table.domains), DOMAIN_AVERAGE],
            "metric": table.metric,
            "direction": table.direction,
            "means": [
                [_json_scalar(v) for v in [*row, avg]]
                for row, avg in zip(table.means, table.avg, strict=True)
            ],
            "sems": [
                [_json_scalar(v) for v in [*row, avg]]
                for row, avg in zip(table.sems, table.avg_sem, strict=True)
            ],
            "counts": table.counts,
            "expected": table.expected,
            "best": table.best,
        }
        for table in tables
    ]
    return json.dumps(out, indent=2, allow_nan=False) + "\n"


def _corner(table: GridTable) -> str:
    """The top-left header: ``lr \\ weight_decay`` (rows, then columns), or the row axis."""
    if table.col_axis is None:
        return table.row_axis
    return f"{table.row_axis} \\ {table.col_axis}"


def _cell_parts(table: GridTable, i: int, j: int, fmt: str) -> tuple[str, str]:
    """A cell's value text and its ``" (n/e)"`` suffix, empty when the cell is complete.

    Counts show no suffix: the count already is the first half of it.
    """
    value = format_value(table.values[i][j], table.agg, fmt)
    n = table.counts[i][j]
    incomplete = n < table.expected and table.agg != "count"
    return value, f" ({n}/{table.expected})" if incomplete else ""


def _markdown_tables(tables: Sequence[GridTable], title: str) -> str:
    blocks = [title]
    for table in tables:
        label = group_label(table)
        if label:
            blocks.append(f"### {_md_escape(label)}")
        header = [_md_escape(_corner(table))]
        header += [_md_escape(format_axis_value(c)) for c in table.cols]
        body = []
        for i, row in enumerate(table.rows):
            cells = [_md_escape(format_axis_value(row))]
            for j in range(len(table.cols)):
                value, suffix = _cell_parts(table, i, j, "markdown")
                cells.append((f"**{value}**" if table.best == (i, j) else value) + suffix)
            body.append(cells)
        right = [False] + [True] * len(table.cols)
        blocks.append("\n".join(_pipe_table(header, body, right)))
    return "\n\n".join(blocks) + "\n"


def _csv_tables(tables: Sequence[GridTable]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if tables:
        first = tables[0]
        axes = [*first.group, first.row_axis]
        if first.col_axis is not None:
            axes.append(first.col_axis)
        writer.writerow([*axes, "value", "n", "expected", "best"])
    for table in tables:
        group = [_csv_scalar(v) for v in table.group.values()]
        for i, row in enumerate(table.rows):
            for j, col in enumerate(table.cols):
                shown = [_csv_scalar(row)]
                if table.col_axis is not None:
                    shown.append(_csv_scalar(col))
                value = format_value(table.values[i][j], table.agg, "csv")
                best = "true" if table.best == (i, j) else "false"
                counts = [str(table.counts[i][j]), str(table.expected)]
                writer.writerow([*group, *shown, value, *counts, best])
    return buffer.getvalue()


def _latex_tables(tables: Sequence[GridTable], title: str) -> str:
    blocks = [f"% {_one_line(title)}\n% needs \\usepackage{{booktabs}}"]
    for table in tables:
        header = [_latex_escape(_corner(table))]
        header += [_latex_escape(format_axis_value(c)) for c in table.cols]
        body = []
        for i, row in enumerate(table.rows):
            cells = [_latex_escape(format_axis_value(row))]
            for j in range(len(table.cols)):
                value, suffix = _cell_parts(table, i, j, "latex")
                cells.append((f"\\textbf{{{value}}}" if table.best == (i, j) else value) + suffix)
            body.append(cells)
        right = [False] + [True] * len(table.cols)
        caption = _latex_escape(group_label(table) or title)
        lines = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{caption}}}"]
        lines += _tabular(header, body, right)
        lines.append("\\end{table}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _json_tables(tables: Sequence[GridTable]) -> str:
    out = [
        {
            "group": {k: _json_scalar(v) for k, v in table.group.items()},
            "row_axis": table.row_axis,
            "col_axis": table.col_axis,
            "rows": [_json_scalar(v) for v in table.rows],
            "cols": [_json_scalar(v) for v in table.cols],
            "metric": table.metric,
            "agg": table.agg,
            "values": [[_json_scalar(v) for v in row] for row in table.values],
            "counts": table.counts,
            "expected": table.expected,
            "best": list(table.best) if table.best is not None else None,
        }
        for table in tables
    ]
    return json.dumps(out, indent=2, allow_nan=False) + "\n"


def _pipe_table(header: list[str], body: list[list[str]], right: list[bool]) -> list[str]:
    """A Markdown pipe table padded to column width, numeric columns right-aligned."""
    widths = [max(3, len(h), *(len(r[k]) for r in body)) for k, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right, strict=True)]
    return [line(header), "|" + "|".join(rule) + "|", *(line(r) for r in body)]


def _tabular(header: list[str], body: list[list[str]], right: list[bool]) -> list[str]:
    """A booktabs tabular, one row per line."""
    spec = "".join("r" if r else "l" for r in right)
    rows = [" & ".join(cells) + r" \\" for cells in body]
    return [
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(header) + r" \\",
        "\\midrule",
        *rows,
        "\\bottomrule",
        "\\end{tabular}",
    ]


def _rich_text(renderables: Sequence[RenderableType]) -> str:
    """Plain text of rich renderables at a fixed width, one blank line between them."""
    console = Console(
        width=_RICH_WIDTH, record=True, file=io.StringIO(), color_system=None, force_terminal=False
    )
    for k, renderable in enumerate(renderables):
        if k:
            console.print()
        console.print(renderable)
    return console.export_text()


def _unwrapped(text: str) -> Text:
    """A title or caption that may run past a narrow table instead of wrapping inside it."""
    return Text(text, no_wrap=True, overflow="ignore")


def _md_escape(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in _one_line(text))


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list | tuple | dict | set | np.ndarray):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _is_numeric(column: pd.Series[Any]) -> bool:
    return bool(pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column))


def _frame_cell(value: Any, fmt: str) -> str:
    """A frame value as human text (rich, Markdown, LaTeX)."""
    if _is_missing(value):
        return _DASH[fmt]
    text = format_axis_value(value)
    if fmt == "markdown":
        return _md_escape(text)
    if fmt == "latex":
        return _latex_escape(text)
    return text


def _csv_scalar(value: Any) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def _json_scalar(value: Any) -> Any:
    """A value JSON can hold: numpy scalars unwrapped, NaN and infinities as null."""
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)
