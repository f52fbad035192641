"""Cell text shared by every layout: numbers, dashes, escapes, pipe and booktabs tables.

Human formats (rich, Markdown, LaTeX) round metric values to three decimals and mark the best
cell; machine formats (CSV, JSON) keep every digit, so that a re-read gives back the numbers
`sweeper.report` computed, and carry the best cell as a boolean or an index.
"""

from __future__ import annotations

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

from sweeper.report import axis_label, check_name
from sweeper.study import Study

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
#: significant digits of the numbers of human-format frames (runs, studies, best), unless set.
DEFAULT_FRAME_DIGITS = 4
_precision: int | None = None


def set_precision(digits: int | None) -> None:
    """Show every number of human-format tables with `digits` significant digits (the CLI's
    global ``--precision``); None restores the defaults: 4 significant digits in frames (runs,
    studies, best), 3 decimals in the averaged grids and domain tables (publication tables)."""
    global _precision
    if digits is not None and not 1 <= digits <= 17:
        raise ValueError(f"precision must be between 1 and 17 digits (got {digits})")
    _precision = digits


def check_format(fmt: str) -> str:
    """Return `fmt` if it is one of `FORMATS`.

    Raises:
        UnknownNameError: ``unknown format 'x'; choose one of: csv, json, latex, markdown, rich``.
    """
    return check_name("format", fmt, FORMATS)


def format_value(value: float | None, agg: str, fmt: str = "markdown") -> str:
    """One aggregate as cell text.

    Args:
        value: the aggregate, or None where undefined.
        agg: the aggregate it is; counts are written as integers.
        fmt: the output format; decides the text of None and the precision.

    Returns:
        Human formats: three decimals (``0.512``; ``:.3g`` below 0.0005 so small values do not
        read as zero) or the significant digits of `set_precision`, None as ``—`` (rich,
        Markdown) or ``--`` (LaTeX). CSV: every digit
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
    if _precision is not None:
        return f"{value:.{_precision}g}"
    if value != 0 and abs(value) < 0.0005:
        return f"{value:.3g}"
    return f"{value:.3f}"


#: the mark of a cell tied for best (its 95% interval overlaps the best cell's), per format.
TIED_MARK = {"rich": " ~", "markdown": " ~", "latex": " $\\sim$", "csv": "", "json": ""}
TIED_RULE = "~ marks a cell whose 95% interval overlaps the best cell's (tied for best)"


def with_error(
    value: str,
    fmt: str,
    *,
    sem: float | None = None,
    low: float | None = None,
    high: float | None = None,
) -> str:
    """A mean's cell text with ``± sem`` and/or ``[low, high]`` appended where known."""
    if sem is not None:
        plus_minus = "$\\pm$" if fmt == "latex" else "±"
        value = f"{value} {plus_minus} {format_value(sem, 'sem', fmt)}"
    if low is not None and high is not None:
        value = f"{value} [{format_value(low, 'mean', fmt)}, {format_value(high, 'mean', fmt)}]"
    return value


def marked(value: str, suffix: str, *, best: bool) -> Text:
    """A rich cell: the best one bold green and starred (the star shows without colour too)."""
    text = Text(value, style="bold green" if best else "")
    text.append(" *" if best else "")
    text.append(suffix)
    return text


def rich_shell(title: str, caption: str | None) -> Table:
    """An empty rich table with a left-justified, unwrapped title and (optional) caption."""
    return Table(
        title=unwrapped(title),
        caption=unwrapped(caption) if caption is not None else None,
        title_justify="left",
        caption_justify="left",
    )


def group_text(group: dict[str, Any]) -> str:
    """``key=value, ...`` of a table's group; empty without groups."""
    return ", ".join(f"{k}={axis_label(v)}" for k, v in group.items())


def pipe_table(header: list[str], body: list[list[str]], right: list[bool]) -> list[str]:
    """A Markdown pipe table padded to column width, numeric columns right-aligned."""
    widths = [max(3, len(h), *(len(r[k]) for r in body)) for k, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right, strict=True)]
    return [line(header), "|" + "|".join(rule) + "|", *(line(r) for r in body)]


def tabular(header: list[str], body: list[list[str]], right: list[bool]) -> list[str]:
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


def rich_text(renderables: Sequence[RenderableType]) -> str:
    """Plain text of rich renderables at a fixed width, one blank line between them."""
    console = Console(
        width=_RICH_WIDTH, record=True, file=io.StringIO(), color_system=None, force_terminal=False
    )
    for k, renderable in enumerate(renderables):
        if k:
            console.print()
        console.print(renderable)
    return console.export_text()


def unwrapped(text: str) -> Text:
    """A title or caption that may run past a narrow table instead of wrapping inside it."""
    return Text(text, no_wrap=True, overflow="ignore")


def md_escape(text: str) -> str:
    return one_line(text).replace("|", "\\|")


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in one_line(text))


def one_line(text: str) -> str:
    return " ".join(text.splitlines())


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list | tuple | dict | set | np.ndarray):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def is_numeric(column: pd.Series[Any]) -> bool:
    return bool(pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column))


def frame_cell(value: Any, fmt: str) -> str:
    """A frame value as human text (rich, Markdown, LaTeX): floats with 4 significant digits
    (or `set_precision`'s)."""
    if is_missing(value):
        return _DASH[fmt]
    if isinstance(value, float | np.floating) and not isinstance(value, bool):
        text = f"{float(value):.{_precision or DEFAULT_FRAME_DIGITS}g}"
    else:
        text = axis_label(value)
    if fmt == "markdown":
        return md_escape(text)
    if fmt == "latex":
        return latex_escape(text)
    return text


def csv_scalar(value: Any) -> str:
    if is_missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def json_scalar(value: Any) -> Any:
    """A value JSON can hold: numpy scalars unwrapped, NaN and infinities as null."""
    if is_missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)


def data_note(study: Study) -> str:
    """A title suffix labelling a study run on synthetic data (its ``dataset`` parameter)."""
    datasets = [study.fixed.get("dataset"), *study.axes.get("dataset", [])]
    return " [SYNTHETIC data, not real ECGs]" if "synthetic" in datasets else ""
