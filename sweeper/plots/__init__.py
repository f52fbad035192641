"""Figures of a study (matplotlib, Agg): each function takes values and returns a Figure.

`plot_study` loads what a kind needs from a store; `save` writes png, svg or pdf.
"""

from __future__ import annotations

from sweeper.plots.bars import domains, fanova_importances, importance
from sweeper.plots.grid import figure_data, heatmap
from sweeper.plots.lines import curves, history
from sweeper.plots.parallel import parallel
from sweeper.plots.save import FORMATS, PlotFormatError, save
from sweeper.plots.study import PLOTS, plot_study

__all__ = [
    "FORMATS",
    "PLOTS",
    "PlotFormatError",
    "curves",
    "domains",
    "fanova_importances",
    "figure_data",
    "heatmap",
    "history",
    "importance",
    "parallel",
    "plot_study",
    "save",
]
