"""Where the database is and how to talk to it: URL resolution, engine creation, SQLite
pragmas, and the one transaction helper every store function runs in.

On SQLite a write transaction starts with ``BEGIN IMMEDIATE``, so that two processes claiming
at once serialise instead of both reading the same queued rows. PostgreSQL runs each
transaction at its default isolation (READ COMMITTED); its claims lock rows instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from sweeper.errors import StoreError

DEFAULT_DB = "results.db"


def resolve_url(db: str | None) -> str:
    """The database URL: `db` (flag), else ``SWEEPER_DB``, else ``results.db`` here.

    A plain path (no ``://``) means a SQLite file.
    """
    raw = db or os.environ.get("SWEEPER_DB") or DEFAULT_DB
    return raw if "://" in raw else f"sqlite:///{raw}"


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def reason(exc: DBAPIError) -> str:
    """The driver's own first line of an error, for messages."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


def insert(dialect: str, table: Any) -> Any:
    """`dialect`'s INSERT, which has ``on_conflict_do_nothing`` and ``on_conflict_do_update``."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


class Database:
    """An engine plus the SQLite connections kept per thread by the claim/record path.

    Raises:
        StoreError: the URL cannot be parsed, its driver is missing, or (without `create`) no
            SQLite file exists at its path.
    """

    def __init__(self, url: str, *, create: bool) -> None:
        self.url = url
        self.engine = _engine(url, create=create)
        self._kept = threading.local()
        self._kept_all: list[Connection] = []
        self._kept_lock = threading.Lock()

    def close(self) -> None:
        with self._kept_lock:
            kept, self._kept_all = self._kept_all, []
        for conn in kept:
            conn.close()
        self.engine.dispose()

    @contextmanager
    def tx(self, *, write: bool = True, keep: bool = False) -> Iterator[Connection]:
        """One transaction; on SQLite a write transaction takes the write lock at BEGIN.

        With `keep` (claim and record), a SQLite connection stays with the calling thread
        between transactions: a pool check-out and check-in cost a sixth of a claim-and-record
        cycle (bench/orchestrator.py). PostgreSQL connections always go back to the pool, whose
        pre-ping survives a server restart.
        """
        kept = self._kept_connection() if keep else None
        conn = kept or self.engine.connect()
        try:
            if conn.get_execution_options().get("sweeper_write") is not write:
                conn.execution_options(sweeper_write=write)
            with conn.begin():
                yield conn
        finally:
            if conn is not kept:
                conn.close()

    def _kept_connection(self) -> Connection | None:
        """This thread's kept SQLite connection, made on first use; None on PostgreSQL, or
        while the kept one is inside a transaction (a nested `tx`)."""
        if self.engine.dialect.name != "sqlite":
            return None
        conn: Connection | None = getattr(self._kept, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._kept.conn = self.engine.connect()
            with self._kept_lock:
                self._kept_all.append(conn)
        return None if conn.in_transaction() else conn


def _engine(url: str, *, create: bool) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"cannot parse database URL {url!r}: use a file path such as results.db, or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:":
            file = Path(path)
            if not file.exists() and not create:
                raise StoreError(
                    f"no sweeper database at {path}: run `sweeper run STUDY_FILE` first, or "
                    "point --db / SWEEPER_DB at one"
                )
            if create and not file.parent.exists():
                raise StoreError(f"cannot create database {path}: no directory {file.parent}")
        engine = create_engine(url, connect_args={"timeout": 60})
        _configure_sqlite(engine)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"cannot open {safe_url(url)}: {exc}; for PostgreSQL install sweeper[postgres]"
        ) from None


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: durable across process crashes (kill -9); a power cut may lose the
        # last transactions, never corrupt the file.
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        # Reads through a memory map instead of a read() per page: a query touching every
        # trial of a 100,000-trial study runs in about half the time. Writes still go
        # through the journal.
        cur.execute("PRAGMA mmap_size = 1073741824")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("sweeper_write", True)
        # Straight to the driver: a full SQLAlchemy execution here costs 5% of a claim.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")  # type: ignore[union-attr]
