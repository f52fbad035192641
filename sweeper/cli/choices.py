"""The fixed choices of command-line options as `Literal` types, so that ``--help`` lists them
and a wrong one is a usage error (exit 2) naming them.

Each mirrors a registry that stays the source of truth (`sweeper.render.text.FORMATS`,
`sweeper.launch.options.MODES`, ...); tests/test_cli_conventions.py holds them equal, so a
new registry entry without its choice here fails CI.
"""

from __future__ import annotations

from typing import Literal

#: sweeper.render.text.FORMATS
Format = Literal["rich", "markdown", "csv", "latex", "json"]
#: sweeper.launch.options.MODES and MODE_ALIASES
Mode = Literal["auto", "batched", "per-trial", "trial"]
#: sweeper.launch.backends.BACKENDS
Backend = Literal["local", "dask"]
#: sweeper.launch.options.CODE_CHANGED
CodeChanged = Literal["refuse", "new-trials"]
#: sweeper.report.cells.AGGREGATES
Aggregate = Literal["mean", "std", "sem", "min", "max", "count"]
#: sweeper.render.domains.SELECTION_TEXT
Selection = Literal["oracle", "source"]
#: the layouts of `sweeper table`
Layout = Literal["grid", "domains"]
#: the kinds of `sweeper plot`
PlotKind = Literal["heatmap", "curves", "domains", "history", "parallel", "importance"]
