"""The results store: the single source of truth for studies and trials.

``Store`` (in `facade`) is the one object callers use; it hands out frozen dataclasses
(`records`) and pandas DataFrames, never ORM rows. Inside, by noun:

- `schema`: the tables (SQLAlchemy ORM), `SCHEMA_VERSION` and the trial `STATES`;
- `engine`: URLs, engines, SQLite pragmas, and the one transaction helper;
- `migrations`: create, upgrade in place, or refuse a database on open;
- `queue`: the trial life cycle, every state change a compare-and-set;
- `queries`: reading studies, statistics and trials;
- `studies`: writing and deleting studies, and searched studies' proposals;
- `provenance`: the versions and git commit a study's run records.
"""

from __future__ import annotations

from sweeper.store.engine import DEFAULT_DB, resolve_url, safe_url
from sweeper.store.facade import Store
from sweeper.store.queue import DEFAULT_LEASE_S
from sweeper.store.records import (
    PROVENANCE_FIELDS,
    BestConfig,
    DeleteReport,
    EnqueueReport,
    StudyInfo,
    StudyStats,
    StudySummary,
    WorkerId,
)
from sweeper.store.schema import SCHEMA_VERSION, STATES

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_LEASE_S",
    "PROVENANCE_FIELDS",
    "SCHEMA_VERSION",
    "STATES",
    "BestConfig",
    "DeleteReport",
    "EnqueueReport",
    "Store",
    "StudyInfo",
    "StudyStats",
    "StudySummary",
    "WorkerId",
    "resolve_url",
    "safe_url",
]
