"""Text for reports: grid tables, per-domain tables and plain frames as rich tables, Markdown,
CSV, LaTeX or JSON (`FORMATS`).

Human formats (rich, Markdown, LaTeX) round metric values to three decimals and mark the best
cell; machine formats (CSV, JSON) keep every digit, so that a re-read gives back the numbers
`sweeper.report` computed, and carry the best cell as a boolean or an index.
"""

from __future__ import annotations

from sweeper.render.comparisons import (
    compare_title,
    config_frame,
    interval_cell,
    render_comparisons,
    render_config_comparison,
    rich_comparisons,
)
from sweeper.render.domains import domain_title, render_domain_tables, rich_domain_tables
from sweeper.render.frames import render_frame, rich_frame
from sweeper.render.grid import grid_title, group_label, render_tables, rich_tables
from sweeper.render.text import FORMATS, check_format, format_value

__all__ = [
    "FORMATS",
    "check_format",
    "compare_title",
    "config_frame",
    "interval_cell",
    "render_comparisons",
    "render_config_comparison",
    "rich_comparisons",
    "domain_title",
    "format_value",
    "grid_title",
    "group_label",
    "render_domain_tables",
    "render_frame",
    "render_tables",
    "rich_domain_tables",
    "rich_frame",
    "rich_tables",
]
