"""Grid tables (`sweeper table NAME`) as rich tables, Markdown, CSV, LaTeX or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from sweeper.registry import choose
from sweeper.render.text import (
    TIED_MARK,
    TIED_RULE,
    csv_scalar,
    data_note,
    format_value,
    group_text,
    json_scalar,
    latex_escape,
    marked,
    md_escape,
    one_line,
    pipe_table,
    rich_shell,
    rich_text,
    tabular,
    with_error,
)
from sweeper.report import GridTable, axis_label
from sweeper.study import Study


def group_label(table: GridTable) -> str:
    """The table's group as ``optimizer=adam, sam_rho=0.02``; empty without groups."""
    return group_text(table.group)


def grid_title(study: Study, tables: Sequence[GridTable], agg: str) -> str:
    """The title `sweeper table NAME` prints above a study's grid tables.

    Returns:
        e.g. ``obesity: test_mse (minimize), mean over seeds (a complete cell holds 3 trials)``;
        for a searched study, what a bin holds; a study run on synthetic data says so. Tables
        with intervals say ``mean [95% CI]`` and what the tied mark means; with sems,
        ``mean ± sem``.
    """
    shown = agg
    first = tables[0] if tables else None
    if first is not None and first.sems is not None:
        shown = f"{shown} ± sem"
    if first is not None and first.ci_low is not None:
        shown = f"{shown} [95% CI: t below 10 trials, bootstrap from 10]"
    direction = f"{study.name}: {study.metric} ({study.direction}), {shown} over"
    if study.searched:
        title = (
            f"{direction} the trials in each bin ({study.kind} search; --agg count shows how many)"
        )
    else:
        expected = tables[0].expected if tables else 0
        title = f"{direction} seeds (a complete cell holds {expected} trials)"
    if first is not None and first.tied is not None:
        title += f"; {TIED_RULE}"
    return title + data_note(study)


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
    return choose("format", fmt, _WRITERS)(tables, title)


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
        rich = rich_shell(label or title, caption if n == len(tables) - 1 else None)
        rich.add_column(Text(_corner(table)), justify="left")
        for col in table.cols:
            rich.add_column(Text(axis_label(col)), justify="right")
        for i, row in enumerate(table.rows):
            cells: list[RenderableType] = [Text(axis_label(row))]
            for j in range(len(table.cols)):
                value, suffix = _cell_parts(table, i, j, "rich")
                cells.append(marked(value, suffix, best=table.best == (i, j)))
            rich.add_row(*cells)
        out.append(rich)
    return out


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
    if table.values[i][j] is not None:
        value = with_error(
            value,
            fmt,
            sem=table.sems[i][j] if table.sems is not None else None,
            low=table.ci_low[i][j] if table.ci_low is not None else None,
            high=table.ci_high[i][j] if table.ci_high is not None else None,
        )
    n = table.counts[i][j]
    incomplete = n < table.expected and table.agg != "count"
    tied = TIED_MARK[fmt] if table.tied is not None and table.tied[i][j] else ""
    return value, tied + (f" ({n}/{table.expected})" if incomplete else "")


def _markdown_tables(tables: Sequence[GridTable], title: str) -> str:
    blocks = [title]
    for table in tables:
        label = group_label(table)
        if label:
            blocks.append(f"### {md_escape(label)}")
        header = [md_escape(_corner(table))]
        header += [md_escape(axis_label(c)) for c in table.cols]
        body = []
        for i, row in enumerate(table.rows):
            cells = [md_escape(axis_label(row))]
            for j in range(len(table.cols)):
                value, suffix = _cell_parts(table, i, j, "markdown")
                cells.append((f"**{value}**" if table.best == (i, j) else value) + suffix)
            body.append(cells)
        right = [False] + [True] * len(table.cols)
        blocks.append("\n".join(pipe_table(header, body, right)))
    return "\n\n".join(blocks) + "\n"


def _csv_tables(tables: Sequence[GridTable]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if tables:
        first = tables[0]
        axes = [*first.group, first.row_axis]
        if first.col_axis is not None:
            axes.append(first.col_axis)
        writer.writerow([*axes, "value", *_extra_names(first), "n", "expected", "best"])
    for table in tables:
        group = [csv_scalar(v) for v in table.group.values()]
        for i, row in enumerate(table.rows):
            for j, col in enumerate(table.cols):
                shown = [csv_scalar(row)]
                if table.col_axis is not None:
                    shown.append(csv_scalar(col))
                value = format_value(table.values[i][j], table.agg, "csv")
                best = "true" if table.best == (i, j) else "false"
                counts = [str(table.counts[i][j]), str(table.expected)]
                extra = _extra_cells(table, i, j)
                writer.writerow([*group, *shown, value, *extra, *counts, best])
    return buffer.getvalue()


def _extra_names(table: GridTable) -> list[str]:
    """The CSV columns of the sems and intervals a table carries (none by default)."""
    names = ["sem"] if table.sems is not None else []
    return names + (["ci_low", "ci_high", "tied"] if table.ci_low is not None else [])


def _extra_cells(table: GridTable, i: int, j: int) -> list[str]:
    cells = []
    if table.sems is not None:
        cells.append(format_value(table.sems[i][j], "sem", "csv"))
    if table.ci_low is not None and table.ci_high is not None and table.tied is not None:
        cells += [
            format_value(table.ci_low[i][j], "mean", "csv"),
            format_value(table.ci_high[i][j], "mean", "csv"),
            "true" if table.tied[i][j] else "false",
        ]
    return cells


def _latex_tables(tables: Sequence[GridTable], title: str) -> str:
    blocks = [f"% {one_line(title)}\n% needs \\usepackage{{booktabs}}"]
    for table in tables:
        header = [latex_escape(_corner(table))]
        header += [latex_escape(axis_label(c)) for c in table.cols]
        body = []
        for i, row in enumerate(table.rows):
            cells = [latex_escape(axis_label(row))]
            for j in range(len(table.cols)):
                value, suffix = _cell_parts(table, i, j, "latex")
                cells.append((f"\\textbf{{{value}}}" if table.best == (i, j) else value) + suffix)
            body.append(cells)
        right = [False] + [True] * len(table.cols)
        caption = latex_escape(group_label(table) or title)
        lines = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{caption}}}"]
        lines += tabular(header, body, right)
        lines.append("\\end{table}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _json_tables(tables: Sequence[GridTable]) -> str:
    out = [
        _json_with_extra(
            table,
            {
                "group": {k: json_scalar(v) for k, v in table.group.items()},
                "row_axis": table.row_axis,
                "col_axis": table.col_axis,
                "rows": [json_scalar(v) for v in table.rows],
                "cols": [json_scalar(v) for v in table.cols],
                "metric": table.metric,
                "agg": table.agg,
                "values": [[json_scalar(v) for v in row] for row in table.values],
                "counts": table.counts,
                "expected": table.expected,
                "best": list(table.best) if table.best is not None else None,
            },
        )
        for table in tables
    ]
    return json.dumps(out, indent=2, allow_nan=False) + "\n"


def _json_with_extra(table: GridTable, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with ``sems``, ``ci_low``, ``ci_high`` and ``tied`` appended where the table
    carries them (a table without them gives the JSON it always gave)."""
    matrices = {"sems": table.sems, "ci_low": table.ci_low, "ci_high": table.ci_high}
    for key, matrix in matrices.items():
        if matrix is not None:
            body[key] = [[json_scalar(v) for v in row] for row in matrix]
    if table.tied is not None:
        body["tied"] = table.tied
    return body


def _rich_tables_text(tables: Sequence[GridTable], title: str) -> str:
    return rich_text(rich_tables(tables, title=title))


#: format -> writer of grid tables; a new output format is one entry here, in
#: `sweeper.render.domains` and in `sweeper.render.frames` (a test checks all three agree).
_WRITERS: dict[str, Callable[[Sequence[GridTable], str], str]] = {
    "csv": lambda tables, title: _csv_tables(tables),
    "json": lambda tables, title: _json_tables(tables),
    "latex": _latex_tables,
    "markdown": _markdown_tables,
    "rich": _rich_tables_text,
}
