"""The database: engine construction, schema migration and the health probe.

SQLite (the default) runs in WAL mode so that readers never wait for the
writer; PostgreSQL is reached with whichever driver is installed. Migrations
are Alembic's, applied by ``serve`` before any worker starts, under a lock so
that several instances starting at once migrate exactly once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from authsvc.config import DatabaseSettings

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
# Arbitrary constant naming our advisory lock in PostgreSQL ("authsvc" in ASCII).
_PG_LOCK_ID = 0x61757468737663


def make_engine(settings: DatabaseSettings) -> Engine:
    """One engine per process; pools are not shared across fork."""
    url = settings.url
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
        else:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 5}
        if settings.max_open_conn:
            kwargs["pool_size"] = settings.max_open_conn
            kwargs["max_overflow"] = 0
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class ReadConnections:
    """One DB-API connection per thread for the per-request reads, outside the pool.

    Every forward-auth request reads one row (its user, or its session). Through
    SQLAlchemy's pool that read pays a checkout and a check-in, and on
    PostgreSQL a pre-ping round trip; a connection of the thread's own, in
    autocommit mode, pays one round trip and nothing else, and PostgreSQL
    prepares each statement once per connection. A connection that fails is
    dropped; a reused one that fails (a restarted server) is replaced and the
    read tried once more before the failure is reported.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._postgres = engine.dialect.name == "postgresql"

    def _connect(self) -> Any:
        cargs, cparams = self.dialect.create_connect_args(self.engine.url)
        if self._postgres:
            cparams = {**cparams, "autocommit": True, "connect_timeout": 5}
            conn = self.dialect.loaded_dbapi.connect(*cargs, **cparams)
        else:
            cparams = {**cparams, "isolation_level": None, "check_same_thread": False}
            conn = self.dialect.loaded_dbapi.connect(*cargs, **cparams)
            conn.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._all.append(conn)
        return conn

    def first(self, sql: str, args: Any) -> Any:
        """The first row of ``sql``, or None; SQLAlchemy's DBAPIError when the database fails."""
        conn = getattr(self._local, "conn", None)
        fresh = conn is None
        for attempt in range(2):
            try:
                if conn is None:
                    conn = self._local.conn = self._connect()
                cursor = conn.cursor()
                try:
                    if self._postgres:
                        cursor.execute(sql, args, prepare=True)
                    else:
                        cursor.execute(sql, args)
                    return cursor.fetchone()
                finally:
                    cursor.close()
            except self._error as exc:
                self._drop(conn)
                conn = None
                if fresh or attempt:
                    raise DBAPIError.instance(sql, args, exc, self._error) from exc
                fresh = True  # a reused connection broke: one more try on a new one
        raise AssertionError("unreachable")

    def _drop(self, conn: Any) -> None:
        self._local.conn = None
        if conn is None:
            return
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

    def close(self) -> None:
        """Close every thread's connection (Service.close)."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


class RawQuery:
    """A SELECT compiled once for the dialect and run on the thread's read connection.

    For the per-request reads only: the ORM and Core execution cost ~10x the
    query itself on SQLite (~175 µs against ~18 µs a lookup).
    """

    def __init__(self, reads: ReadConnections, stmt: Any) -> None:
        self.reads = reads
        compiled = stmt.compile(dialect=reads.dialect)
        self.sql = str(compiled)
        self.order: tuple[str, ...] | None = (
            tuple(compiled.positiontup) if compiled.positional else None
        )

    def first(self, **params: Any) -> Any:
        """The first row as a tuple, or None; a driver error as SQLAlchemy's wrapper."""
        args: Any = tuple(params[n] for n in self.order) if self.order is not None else params
        return self.reads.first(self.sql, args)


def session_factory(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(conn: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """Serialise migrations between instances: an advisory lock, or a file lock for SQLite."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_ID})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_ID})
                conn.commit()
        return
    db_file = engine.url.database
    if not db_file or db_file == ":memory:":
        with engine.connect() as conn:
            yield conn
        return
    with open(f"{db_file}.migrate-lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class MigrationError(Exception):
    """The schema cannot be brought up to date; the message says why in one line."""


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (the newest); a no-op when it is there already.

    Raises MigrationError saying why not (the database refused, or existing
    rows break a new rule).
    """
    try:
        _migrate(engine, revision)
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise MigrationError(
            f"database {engine.dialect.name}: cannot migrate: {first[0] if first else exc}"
        ) from exc


def _migrate(engine: Engine, revision: str) -> None:
    with _migration_lock(engine) as conn:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            # SQLite rebuilds a table to alter it; with foreign keys on, dropping the old
            # table would cascade-delete every link and session. Outside a transaction only.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            command.upgrade(_alembic_config(conn), revision)
            conn.commit()
        finally:
            if sqlite:
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def unavailable(exc: BaseException) -> bool:
    """Does ``exc`` say the database cannot be reached (rather than that a query is wrong)?

    Such a failure is CONTRACT §7's 503 ``service.unavailable``, not a 500.
    """
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def ping(engine: Engine) -> str | None:
    """None when the database answers, else why not (for the log: it names host and port)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None
