"""Where the database is and how to talk to it: URL resolution, engine creation, SQLite
pragmas, and the one transaction helper every store function runs in.

On SQLite a write transaction starts with ``BEGIN IMMEDIATE``, so that two processes claiming
at once serialise instead of both reading the same queued rows. PostgreSQL runs each
transaction at its default isolation (READ COMMITTED); its claims lock rows instead.

Reading never writes: a SQLite file is switched to WAL (a change to its header) by its first
write transaction, not on connect, so a query leaves the bytes of a database (or of another
application's file it refuses) exactly as they were. A full disk, a lock held past the busy
timeout and a server that refuses the connection become a `StoreError` naming the database
(its password masked) and what to do.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from sweeper.errors import StoreError

DEFAULT_DB = "results.db"
#: seconds a SQLite connection waits for another process's write lock (the URL's
#: ``?timeout=SECONDS`` sets another).
BUSY_TIMEOUT_S = 60.0
#: seconds to wait for a PostgreSQL server to answer (the URL's ``?connect_timeout=`` wins).
CONNECT_TIMEOUT_S = 10
#: names a file holding the password of a server URL that has none (a Docker secret), so
#: that the password is never on a command line (``ps``) or in the URL workers are given.
PASSWORD_FILE_ENV = "SWEEPER_DB_PASSWORD_FILE"


def resolve_url(db: str | None) -> str:
    """The database URL: `db` (flag), else ``SWEEPER_DB``, else ``results.db`` here.

    A plain path (no ``://``) means a SQLite file.
    """
    raw = db or os.environ.get("SWEEPER_DB") or DEFAULT_DB
    return raw if "://" in raw else f"sqlite:///{raw}"


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages (even a URL that does not parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def reason(exc: DBAPIError) -> str:
    """The driver's own first line of an error, for messages."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def store_error(exc: Exception, url: str) -> StoreError | None:
    """The `StoreError` a user can act on for a database error that is not a bug: a full disk,
    a lock held past the busy timeout, a server that cannot be reached. None for any other.

    Args:
        exc: SQLAlchemy's `OperationalError`, or the SQLite driver's own (raised by the BEGIN
            that `_on_begin` sends straight to the driver).
    """
    if isinstance(exc, OperationalError):
        why = reason(exc)
    elif isinstance(exc, sqlite3.OperationalError):
        why = (str(exc).strip().splitlines() or [""])[0]
    else:
        return None
    parsed = _parsed(url)
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        path = parsed.database or ":memory:"
        if "database or disk is full" in why:
            folder = Path(path).resolve().parent
            return StoreError(
                f"the disk holding {path} is full (in {folder}): free some space, or give "
                "--db a file on another disk, and run the command again; the transaction that "
                "failed was rolled back"
            )
        if "disk I/O error" in why:
            return StoreError(
                f"cannot write the database {path}: disk I/O error: the disk holding it may be "
                "full (or failing, or past a file-size limit); free some space, or give --db a "
                "file on another disk, and run the command again"
            )
        if "database is locked" in why:
            wait = _busy_timeout_s(parsed)
            return StoreError(
                f"the database {path} is locked: another process held its write lock for more "
                f"than {wait:g} s; let it finish (or stop it) and run the command again, or "
                f"wait longer with --db 'sqlite:///{path}?timeout=SECONDS'"
            )
        return None
    if isinstance(exc, OperationalError) and (
        exc.connection_invalidated or "connect" in why.lower()
    ):
        return StoreError(f"cannot connect to {safe_url(url)}: {why}")
    return None


def _raise_store_error(exc: Exception, url: str) -> None:
    error = store_error(exc, url)
    if error is not None:
        raise error from exc


def _parsed(url: str) -> Any:
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def _busy_timeout_s(parsed: Any) -> float:
    """The SQLite URL's ``?timeout=SECONDS``, else `BUSY_TIMEOUT_S`."""
    raw = parsed.query.get("timeout")
    try:
        value = float(raw) if raw is not None else BUSY_TIMEOUT_S
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value <= 86_400:
        raise StoreError(
            f"{safe_url(parsed.render_as_string(hide_password=False))}: timeout must be a "
            f"number of seconds between 0 and 86400 (got {raw!r})"
        )
    return value


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

        Raises:
            StoreError: the disk is full, a lock was held past the busy timeout, or the server
                cannot be reached (see `store_error`); the transaction was rolled back.
        """
        try:
            kept = self._kept_connection() if keep else None
            conn = kept or self.engine.connect()
        except (OperationalError, sqlite3.OperationalError) as exc:
            _raise_store_error(exc, self.url)
            raise
        try:
            if conn.get_execution_options().get("sweeper_write") is not write:
                conn.execution_options(sweeper_write=write)
            with conn.begin():
                yield conn
        except (OperationalError, sqlite3.OperationalError) as exc:
            _raise_store_error(exc, self.url)
            raise
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
    except (ArgumentError, ValueError):
        # ValueError: a port that is not a number. The password never reaches the message.
        raise StoreError(
            f"cannot parse database URL {safe_url(url)!r}: use a file path such as "
            "results.db, or postgresql+psycopg://USER@HOST:PORT/DB"
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
        busy_s = _busy_timeout_s(parsed)
        engine = create_engine(url, connect_args={"timeout": busy_s})
        _configure_sqlite(engine, busy_s)
        return engine
    connect: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # Without it an address that never answers hangs for the TCP timeout (minutes).
        connect["connect_timeout"] = CONNECT_TIMEOUT_S
    secret = os.environ.get(PASSWORD_FILE_ENV)
    if secret and parsed.password is None:
        # Only the engine holds it: the URL that workers are given and messages show has none.
        parsed = parsed.set(password=_read_password(secret))
    try:
        return create_engine(parsed, pool_pre_ping=True, connect_args=connect)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(
            f"cannot open {safe_url(url)}: {exc}; for PostgreSQL install sweeper[postgres]"
        ) from None


def _read_password(path: str) -> str:
    """The password in the file `path` (a Docker secret), without its trailing newline."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(4096)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise StoreError(f"{PASSWORD_FILE_ENV}={path}: cannot read the password: {why}") from None
    return text.rstrip("\r\n")


def _configure_sqlite(engine: Engine, busy_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_s * 1000)}")
        # Every pragma here lasts for the connection only and writes nothing to the file; the
        # journal mode, which the file keeps, is set by the first write (`_on_begin`).
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
        pooled = conn.connection
        # Straight to the driver: a full SQLAlchemy execution here costs 5% of a claim.
        driver: Any = pooled.driver_connection
        if write and not pooled.info.get("sweeper_wal"):
            # Once per connection, outside a transaction (SQLite's rule for this pragma):
            # writers and readers then never block each other. A no-op on a WAL file.
            _use_wal(driver, busy_s)
            pooled.info["sweeper_wal"] = True
        driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")


def _use_wal(driver: Any, busy_s: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried until `busy_s` has passed.

    Switching a rollback-journal file takes its exclusive lock from a shared one; when two
    connections switch at once, each holding the shared lock the other waits for, SQLite
    answers one of them "database is locked" at once rather than call the busy handler (it
    would wait forever). That one lets go of its lock by failing, so after a short, random
    pause it finds the file switched by the other (seen as a flaky 'locked' error when
    processes opened an old database together).
    """
    deadline = time.monotonic() + busy_s
    while True:
        try:
            driver.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))
