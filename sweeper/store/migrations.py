"""Opening a database: create it, upgrade it to `SCHEMA_VERSION`, or refuse it.

Why not Alembic: sweeper needs to upgrade its own few tables in place, on every open, from
any earlier release, on SQLite and PostgreSQL. An ordered list of steps (version -> function)
run inside one write transaction does that in one screen of code: the transaction re-reads
``schema_version`` after taking the write lock (``BEGIN IMMEDIATE`` on SQLite, an advisory
lock on PostgreSQL), so of two processes opening an old database at once one upgrades and the
other finds the work done; and both databases have transactional DDL, so a failed upgrade
leaves the database as it was. Alembic would add a dependency, an env.py, a second version
table and autogeneration that this schema does not need.

Each step is written against the tables as they were, never against `sweeper.store.schema`
(which moves on), and is idempotent: it looks before it adds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

from sweeper.errors import SchemaVersionError, StoreError
from sweeper.store.engine import Database, insert, reason, safe_url
from sweeper.store.schema import SCHEMA_VERSION, Base, MetaRow

#: Any constant: the PostgreSQL advisory lock that serialises creating and upgrading.
_PG_LOCK = 0x5357_4545  # "SWEE"


def open_schema(db: Database, *, create: bool) -> None:
    """Make the database at `db` ready for this sweeper: created (with `create`), upgraded in
    place from an earlier schema version, or refused.

    Raises:
        StoreError: no sweeper database is there (and `create` is false), a SQLite file holds
            another application's tables (even with `create`; the file is left as it was),
            upgrading failed (nothing was changed), or the database cannot be reached (a full
            disk, a lock held too long: see `sweeper.store.engine.store_error`).
        SchemaVersionError: a newer sweeper wrote it, or its version row is missing.
    """
    # A read transaction: looking must not write (not even SQLite's journal mode).
    with db.tx(write=False) as conn:
        tables = set(inspect(conn).get_table_names())
    if MetaRow.__tablename__ not in tables:
        if tables and (not create or db.engine.dialect.name == "sqlite"):
            # A SQLite file is one application's: never add sweeper's tables to another's. A
            # PostgreSQL database may be shared, so `create` adds them beside the others.
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise StoreError(
                f"{safe_url(db.url)} is not a sweeper database (no sweeper_meta table; it holds "
                f"{shown}): give --db a new file or a sweeper database; it was left unchanged"
            )
        if not create:
            raise StoreError(
                f"no sweeper database at {safe_url(db.url)}: run `sweeper run STUDY_FILE` "
                "first, or point --db / SWEEPER_DB at one"
            )
        with db.tx() as conn:
            _lock(conn)
            # Another process may have created it since we looked: create_all skips what
            # exists, and its version row stands.
            Base.metadata.create_all(conn)
            if _version(conn) is None:
                conn.execute(
                    insert(conn.dialect.name, MetaRow).values(
                        key="schema_version", value=str(SCHEMA_VERSION)
                    )
                )
        tables = set(Base.metadata.tables)
    with db.tx(write=False) as conn:
        found = _checked(db, _version(conn))
    if found == SCHEMA_VERSION and not set(Base.metadata.tables) <= tables:
        # A table gone from a current database (dropped by hand, or a partial copy): every
        # table is one the store queries, so create it again, empty.
        with db.tx() as conn:
            _lock(conn)
            Base.metadata.create_all(conn)
    if found < SCHEMA_VERSION:
        try:
            with db.tx() as conn:
                _lock(conn)
                # Re-read under the write lock: another process may have upgraded meanwhile.
                _upgrade(conn, _checked(db, _version(conn)))
        except DBAPIError as exc:
            raise StoreError(
                f"cannot upgrade database {safe_url(db.url)} from schema version {found} to "
                f"{SCHEMA_VERSION}: {reason(exc)}; nothing was changed"
            ) from exc


def _version(conn: Connection) -> str | None:
    return conn.scalar(select(MetaRow.value).where(MetaRow.key == "schema_version"))


def _checked(db: Database, found: str | None) -> int:
    """The version as a number this sweeper can read or upgrade, else SchemaVersionError."""
    version = int(found) if found is not None and found.isdigit() else None
    if version is None or version < 1:
        raise SchemaVersionError(
            f"database {safe_url(db.url)} has no valid schema version (found {found!r}): it "
            "was not written by sweeper, or was damaged; start a new database with --db"
        )
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"database {safe_url(db.url)} has schema version {found}, but this sweeper reads "
            f"version {SCHEMA_VERSION} at most: a newer sweeper wrote it; upgrade sweeper "
            "(pip install -U sweeper) to open it"
        )
    return version


def _lock(conn: Connection) -> None:
    """Serialise schema changes. SQLite's BEGIN IMMEDIATE already holds the write lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})


def _upgrade(conn: Connection, version: int) -> None:
    """Run every step above `version`, then record the new version (one transaction)."""
    for target, step in STEPS:
        if version < target:
            step(conn)
            version = target
    conn.execute(update(MetaRow).where(MetaRow.key == "schema_version").values(value=str(version)))


# -- version 2: curves in their own table; study provenance; trial code hash and log ---------

_V2 = MetaData()
# Only the key columns of these two: enough for the foreign keys of the tables created below.
Table("studies", _V2, Column("id", Integer, primary_key=True))
Table("trials", _V2, Column("id", Integer, primary_key=True))
_V2_PROPOSALS = Table(
    "proposals",
    _V2,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", Integer, ForeignKey("studies.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("params", Text, nullable=False),
    Column("raw", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("study_id", "number", name="uq_proposals_study_number"),
)
_V2_CURVES = Table(
    "trial_curves",
    _V2,
    Column(
        "trial_id",
        Integer,
        ForeignKey("trials.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("curves", Text, nullable=False),
)
_V2_COLUMNS: dict[str, dict[str, TypeEngine[Any]]] = {
    "studies": {
        "sweeper_version": String(64),
        "python_version": String(64),
        "torch_version": String(64),
        "git_commit": String(64),
        "code_hash": Text(),
        "code": Text(),
    },
    "trials": {"code_hash": Text(), "log": Text()},
}


def _to_v2(conn: Connection) -> None:
    tables = set(inspect(conn).get_table_names())
    # Version-1 databases from before searched studies have no proposals table.
    for table in (_V2_PROPOSALS, _V2_CURVES):
        if table.name not in tables:
            table.create(conn)
    for name, columns in _V2_COLUMNS.items():
        have = {c["name"] for c in inspect(conn).get_columns(name)}
        for column, type_ in columns.items():
            if column not in have:
                ddl = type_.compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE {name} ADD COLUMN {column} {ddl}"))
    if "curves" in {c["name"] for c in inspect(conn).get_columns("trials")}:
        # An empty curve was stored as NULL: such trials get no row.
        conn.execute(
            text(
                "INSERT INTO trial_curves (trial_id, curves) SELECT id, curves FROM trials "
                "WHERE curves IS NOT NULL AND curves <> '' ON CONFLICT (trial_id) DO NOTHING"
            )
        )
        if conn.dialect.name != "sqlite" or sqlite3.sqlite_version_info >= (3, 35):
            conn.execute(text("ALTER TABLE trials DROP COLUMN curves"))
        else:
            # SQLite before 3.35 cannot drop a column: leave it empty (the ORM never names it).
            conn.execute(text("UPDATE trials SET curves = NULL"))


#: (version, the step that upgrades a database from the version before it), oldest first.
STEPS: tuple[tuple[int, Callable[[Connection], None]], ...] = ((2, _to_v2),)
