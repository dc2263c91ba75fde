"""Opening a database: URLs, the SQLite default and its pragmas, PostgreSQL via asyncpg."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mailwarm._errors import ConfigurationError

__all__ = [
    "DATABASE_URL_ENV",
    "create_engine",
    "default_database_url",
    "display_url",
    "normalise_url",
]

DATABASE_URL_ENV = "MAILWARM_DATABASE_URL"

# How long a SQLite writer waits for another writer's lock before failing (seconds). Writers
# queue behind each other instead of failing at once with "database is locked" (SQLite's own
# default wait is 0).
SQLITE_BUSY_TIMEOUT = 20.0


def default_database_url() -> str:
    """``MAILWARM_DATABASE_URL``, else a SQLite file in the user's data directory."""
    configured = os.environ.get(DATABASE_URL_ENV)
    if configured:
        return configured
    from platformdirs import user_data_path

    return f"sqlite:///{user_data_path('mailwarm', appauthor=False) / 'mailwarm.db'}"


def normalise_url(url: str | URL) -> URL:
    """The async-driver form of a database URL: ``sqlite:///x.db`` becomes
    ``sqlite+aiosqlite:///x.db``, ``postgresql://...`` becomes ``postgresql+asyncpg://...``."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError as exc:
        raise ConfigurationError(
            f"cannot read the database URL {str(url)!r}: use e.g. sqlite:///path/to/mailwarm.db "
            "or postgresql://user@host:5432/dbname"
        ) from exc
    backend = parsed.get_backend_name()
    driver = parsed.get_driver_name()
    if backend == "sqlite":
        if driver not in ("aiosqlite", "pysqlite"):
            raise ConfigurationError(f"SQLite needs the aiosqlite driver, not {driver!r}")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        if driver not in ("asyncpg", "psycopg2", "psycopg", "postgresql"):
            raise ConfigurationError(f"PostgreSQL needs the asyncpg driver, not {driver!r}")
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigurationError(
        f"unsupported database {backend!r}: mailwarm stores its state in SQLite or PostgreSQL"
    )


def display_url(url: str | URL) -> str:
    """A database URL fit for messages and logs: the password masked."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<unreadable database URL>"
    return parsed.render_as_string(hide_password=True)


def create_engine(url: str | URL, **options: Any) -> AsyncEngine:
    """An async engine for ``url``, with SQLite set up for concurrent use (WAL, a busy timeout,
    ``BEGIN IMMEDIATE`` so writers queue, foreign keys on)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT, **options.pop("connect_args", {})}
        engine = create_async_engine(parsed, connect_args=connect_args, **options)
        _configure_sqlite(engine)
        return engine
    # No pre-ping (a round trip on every checkout, a tenth of a small API request's time):
    # connections are recycled after 30 minutes instead, and a dropped one fails only the
    # request that meets it.
    return create_async_engine(parsed, pool_recycle=1800, **options)


def _configure_sqlite(engine: AsyncEngine) -> None:
    # SQLAlchemy's documented recipe for SQLite transactions: take transaction control away
    # from the driver, then begin each transaction IMMEDIATE. A deferred transaction that
    # reads first and writes later can fail to upgrade its lock ("database is locked") even
    # with a busy timeout; an immediate one waits for the write lock up front.
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
