"""Numbers for reports: grid tables, per-domain tables, ranked configurations and binned axes.

Everything here takes the trials DataFrame the store produces (one row per trial: ``id``,
``state``, ``seed``, ..., one column per task parameter, one per metric) plus the study
description, and returns values; `sweeper.render` turns them into text.
"""

from __future__ import annotations

from sweeper.registry import check_name
from sweeper.report.best import best_configs, observed_axes
from sweeper.report.bins import binned_axes
from sweeper.report.cells import AGGREGATES, DIRECTIONS, axis_label
from sweeper.report.domains import DOMAIN_AVERAGE, DomainTable, domain_tables
from sweeper.report.grid import GridTable, grid_tables
from sweeper.report.study import study_best, study_domain_tables, study_grid_tables

__all__ = [
    "AGGREGATES",
    "DIRECTIONS",
    "DOMAIN_AVERAGE",
    "DomainTable",
    "GridTable",
    "axis_label",
    "best_configs",
    "binned_axes",
    "check_name",
    "domain_tables",
    "grid_tables",
    "observed_axes",
    "study_best",
    "study_domain_tables",
    "study_grid_tables",
]
