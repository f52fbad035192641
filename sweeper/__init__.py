"""sweeper: generalization sweeps with every trial kept in a results database.

The Python API (`sweeper.api`): `run`, `Study`, `load_trials`, `load_curves`; and for a user's
training function, `Trial` and `TrialPruned`. Each loads on first use, so that ``import
sweeper`` (and the CLI's ``--help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sweeper.api import load_curves, load_trials, run
    from sweeper.study import Study
    from sweeper.trial import Trial, TrialPruned

_LAZY = {
    "run": "sweeper.api",
    "load_trials": "sweeper.api",
    "load_curves": "sweeper.api",
    "Study": "sweeper.study",
    "Trial": "sweeper.trial",
    "TrialPruned": "sweeper.trial",
}

__all__ = ["Study", "Trial", "TrialPruned", "__version__", "load_curves", "load_trials", "run"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sweeper' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
