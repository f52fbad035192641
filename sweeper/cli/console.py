"""The consoles of the command line, what they print outside a terminal, and logging.

Tables go to stdout (`out`), progress, messages and logs to stderr (`err`). In a terminal
tables are drawn with Rich's boxes at the terminal's width. When stdout is a pipe or a file
nothing is ever cut: tables are printed as plain text (columns separated by spaces, no box
glyphs, no colour) at their full width, so that ``sweeper runs NAME | grep`` and
``> table.txt`` keep every character. ``NO_COLOR`` (https://no-color.org) is honoured by Rich
itself. Numbers in tables have 4 significant digits unless the global ``--precision`` says
otherwise (`sweeper.render.text.set_precision`).
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any

from rich.console import Console, Group
from rich.table import Table

#: the width of a console that is not a terminal: wider than any table, so none is cut.
UNBOUNDED_WIDTH = 1_000_000
#: --verbose counts and --quiet -> the level of sweeper's loggers.
LOG_LEVELS = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


class PipeAwareConsole(Console):
    """A Rich console that, when its file is not a terminal, prints tables unboxed and uncut,
    without trailing spaces."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = {k: v for k, v in kwargs.items() if k in ("highlight", "soft_wrap")}

    def print(self, *objects: Any, **kwargs: Any) -> None:
        # Asked at each print: the file (sys.stdout) may be swapped, as test runners do.
        if self.is_terminal:
            super().print(*objects, **kwargs)
            return
        buffer = io.StringIO()
        flat = Console(
            file=buffer, width=UNBOUNDED_WIDTH, color_system=None, emoji=False, **self._settings
        )
        flat.print(*(plain(o) for o in objects), **kwargs)
        self.file.write("\n".join(line.rstrip() for line in buffer.getvalue().split("\n")))
        self.file.flush()


def plain(renderable: Any) -> Any:
    """`renderable` with every table in it made boxless (columns separated by two spaces)."""
    if isinstance(renderable, Table):
        renderable.box = None
        renderable.show_edge = False
        renderable.pad_edge = False
        renderable.title_justify = "left"
        return renderable
    if isinstance(renderable, Group):
        return Group(*(plain(r) for r in renderable.renderables))
    return renderable


_verbosity = 0
_HANDLER_NAME = "sweeper-cli"


def quiet() -> bool:
    """Whether the global ``--quiet`` asked for errors only: no progress, no warnings."""
    return _verbosity < 0


def setup_logging(verbosity: int, console: Console) -> None:
    """Send sweeper's log records to stderr: through Rich's handler in a terminal, as plain
    ``LEVEL logger: message`` lines otherwise. `verbosity`: -1 (--quiet) errors only, 0
    warnings (the default), 1 (-v) information, 2 (-vv) debugging."""
    global _verbosity
    _verbosity = max(-1, min(2, verbosity))
    level = LOG_LEVELS[_verbosity]
    handler: logging.Handler
    if console.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, show_time=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("sweeper")
    for old in list(logger.handlers):
        if old.get_name() == _HANDLER_NAME:
            logger.removeHandler(old)
    handler.set_name(_HANDLER_NAME)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
