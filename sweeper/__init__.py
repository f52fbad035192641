"""sweeper: generalization sweeps with every trial kept in a results database."""

from __future__ import annotations

__version__ = "0.1.0"
