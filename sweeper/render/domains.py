"""Per-domain tables (`sweeper table NAME --layout domains`) in every format."""

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
from sweeper.report import DOMAIN_AVERAGE, DomainTable, axis_label
from sweeper.study import Study


def domain_title(study: Study, tables: Sequence[DomainTable], col_axis: str, sem: bool) -> str:
    """The title `sweeper table NAME --layout domains` prints above the per-domain tables.

    Tables with intervals say ``[95% CI]``, how Avg's is computed and what ``~`` marks; a
    selection says how each cell's hyperparameters were chosen.
    """
    first = tables[0] if tables else None
    expected = first.expected if first is not None else 0
    shown = "mean ± sem" if sem else "mean"
    ci = first is not None and first.ci_low is not None
    if ci:
        shown += " [95% CI]"
    title = (
        f"{study.name}: {study.metric} ({study.direction}) on the held-out {col_axis}, {shown} "
        f"over seeds (a complete cell holds {expected} trials); Avg = mean of the "
        f"{len(study.axes[col_axis])} domain columns"
    )
    if ci:
        title += (
            " (its CI: a bootstrap stratified by domain, each domain's seeds rescaled by "
            f"sqrt(n/(n-1))); {TIED_RULE.replace('cell', 'row')} in that column"
        )
    if first is not None and first.selection is not None:
        title += f"; {SELECTION_TEXT[first.selection]}"
    return title + data_note(study)


#: what a selection did, in the words of the table title.
SELECTION_TEXT = {
    "oracle": "hyperparameters chosen per (row, domain) by ORACLE selection: the best seed mean "
    "on the held-out domain itself (an upper bound: it looks at the test data)",
    "source": "hyperparameters chosen per (row, domain) by SOURCE selection: the best seed mean "
    "of source_f1, validation on the training domains (the honest choice)",
}


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
    return choose("format", fmt, _WRITERS)(tables, title, sem)


def _typeset_domain_tables(fmt: str, tables: Sequence[DomainTable], title: str, sem: bool) -> str:
    """Markdown or LaTeX (they differ only in escapes, bold and the table frame)."""
    latex_head = f"% {one_line(title)}\n% needs \\usepackage{{booktabs}}"
    blocks = [title if fmt == "markdown" else latex_head]
    for table in tables:
        label = group_text(table.group)
        escape = md_escape if fmt == "markdown" else latex_escape
        header = [escape(_domain_corner(table))]
        header += [escape(axis_label(d)) for d in table.domains] + [DOMAIN_AVERAGE]
        body = []
        for i, row in enumerate(table.rows):
            cells = [escape(axis_label(row))]
            for j in range(len(table.domains) + 1):
                value, suffix = _domain_cell_parts(table, i, j, fmt, sem)
                if table.best[j] == i:
                    value = f"**{value}**" if fmt == "markdown" else f"\\textbf{{{value}}}"
                cells.append(value + suffix)
            body.append(cells)
        right = [False] + [True] * (len(table.domains) + 1)
        if fmt == "markdown":
            if label:
                blocks.append(f"### {md_escape(label)}")
            blocks.append("\n".join(pipe_table(header, body, right)))
        else:
            caption = latex_escape(label or title)
            lines = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{caption}}}"]
            lines += tabular(header, body, right)
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
        label = group_text(table.group)
        caption = f"{title}; best per column in bold, marked *" if label else "best per column *"
        rich = rich_shell(label or title, caption if n == len(tables) - 1 else None)
        rich.add_column(Text(_domain_corner(table)), justify="left")
        for domain in table.domains:
            rich.add_column(Text(axis_label(domain)), justify="right")
        rich.add_column(Text(DOMAIN_AVERAGE), justify="right")
        for i, row in enumerate(table.rows):
            cells: list[RenderableType] = [Text(axis_label(row))]
            for j in range(len(table.domains) + 1):
                value, suffix = _domain_cell_parts(table, i, j, "rich", sem)
                cells.append(marked(value, suffix, best=table.best[j] == i))
            rich.add_row(*cells)
        out.append(rich)
    return out


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
    if mean is not None:
        value = with_error(
            value,
            fmt,
            sem=err if sem else None,
            low=table.ci_low[i][j] if table.ci_low is not None else None,
            high=table.ci_high[i][j] if table.ci_high is not None else None,
        )
    tied = TIED_MARK[fmt] if table.tied is not None and table.tied[i][j] else ""
    return value, tied + suffix


def _csv_domain_tables(tables: Sequence[DomainTable]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if tables:
        first = tables[0]
        head = [*first.group, first.row_axis, first.col_axis]
        ci = ["ci_low", "ci_high", "tied"] if first.ci_low is not None else []
        writer.writerow([*head, "mean", "sem", *ci, "n", "expected", "best"])
    for table in tables:
        group = [csv_scalar(v) for v in table.group.values()]
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
                        csv_scalar(row),
                        csv_scalar(domain),
                        format_value(mean, "mean", "csv"),
                        format_value(err, "sem", "csv"),
                        *_csv_interval(table, i, j),
                        str(n),
                        str(expected),
                        "true" if table.best[j] == i else "false",
                    ]
                )
    return buffer.getvalue()


def _csv_interval(table: DomainTable, i: int, j: int) -> list[str]:
    if table.ci_low is None or table.ci_high is None or table.tied is None:
        return []
    return [
        format_value(table.ci_low[i][j], "mean", "csv"),
        format_value(table.ci_high[i][j], "mean", "csv"),
        "true" if table.tied[i][j] else "false",
    ]


def _json_extra(table: DomainTable) -> dict[str, Any]:
    """The keys of intervals and selection, only where the table carries them."""
    out: dict[str, Any] = {}
    if table.ci_low is not None and table.ci_high is not None:
        out["ci_low"] = [[json_scalar(v) for v in row] for row in table.ci_low]
        out["ci_high"] = [[json_scalar(v) for v in row] for row in table.ci_high]
        out["tied"] = table.tied
    if table.selection is not None:
        out["selection"] = table.selection
        out["chosen"] = [
            [{k: json_scalar(v) for k, v in cell.items()} for cell in row]
            for row in table.chosen or []
        ]
    return out


def _json_domain_tables(tables: Sequence[DomainTable]) -> str:
    out = [
        {
            "group": {k: json_scalar(v) for k, v in table.group.items()},
            "row_axis": table.row_axis,
            "col_axis": table.col_axis,
            "rows": [json_scalar(v) for v in table.rows],
            "cols": [*(json_scalar(v) for v in table.domains), DOMAIN_AVERAGE],
            "metric": table.metric,
            "direction": table.direction,
            "means": [
                [json_scalar(v) for v in [*row, avg]]
                for row, avg in zip(table.means, table.avg, strict=True)
            ],
            "sems": [
                [json_scalar(v) for v in [*row, avg]]
                for row, avg in zip(table.sems, table.avg_sem, strict=True)
            ],
            "counts": table.counts,
            "expected": table.expected,
            "best": table.best,
            **_json_extra(table),
        }
        for table in tables
    ]
    return json.dumps(out, indent=2, allow_nan=False) + "\n"


#: format -> writer of per-domain tables (see `sweeper.render.grid` for the other two tables).
_WRITERS: dict[str, Callable[[Sequence[DomainTable], str, bool], str]] = {
    "csv": lambda tables, title, sem: _csv_domain_tables(tables),
    "json": lambda tables, title, sem: _json_domain_tables(tables),
    "latex": lambda tables, title, sem: _typeset_domain_tables("latex", tables, title, sem),
    "markdown": lambda tables, title, sem: _typeset_domain_tables("markdown", tables, title, sem),
    "rich": lambda tables, title, sem: rich_text(rich_domain_tables(tables, title=title, sem=sem)),
}
