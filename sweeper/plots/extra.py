"""The optional plotting libraries (the ``plot`` extra): checked before any work starts, so
that a missing one is one line naming the extra, not a traceback halfway through a figure."""

from __future__ import annotations

import importlib

from sweeper.errors import SweeperError

#: what `pip install 'sweeper[plot]'` brings: matplotlib (files), plotly (the HTML report),
#: scikit-learn (Optuna's fANOVA importances).
PLOT_EXTRA = ("matplotlib", "plotly", "sklearn")


class MissingExtraError(SweeperError):
    """An optional library that a command needs is not installed."""


def require(what: str, *modules: str) -> None:
    """Import `modules` (e.g. ``"matplotlib"``), or fail with the extra to install.

    Args:
        what: what needs them, the start of the message (``"plotting"``).

    Raises:
        MissingExtraError: ``plotting needs the plot extra: pip install 'sweeper[plot]'``.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtraError(
                f"{what} needs the plot extra: pip install 'sweeper[plot]'"
            ) from None
