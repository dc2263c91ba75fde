"""Databases for the storage tests: a fresh SQLite file, and a fresh PostgreSQL database.

PostgreSQL runs at 127.0.0.1:5432 with trust auth (override with MAILWARM_TEST_POSTGRES, a
URL of a database the tests may use to create and drop others). Each test gets its own
database, created from ``template0`` and dropped afterwards, so runs never see each other's
rows, in parallel (pytest-xdist) or not. Without a reachable server the tests fail with
what to start; they do not skip.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from mailwarm.storage._migrate import upgrade

ADMIN_URL = os.environ.get(
    "MAILWARM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def _admin() -> asyncpg.Connection:
    url = make_url(ADMIN_URL)
    try:
        return await asyncpg.connect(
            host=url.host, port=url.port, user=url.username, database=url.database
        )
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {url.host}:{url.port} is not reachable ({exc}): start it "
            "(e.g. `service postgresql start`) or set MAILWARM_TEST_POSTGRES",
            pytrace=False,
        )


@contextlib.asynccontextmanager
async def fresh_postgres() -> AsyncIterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    name = f"mailwarm_test_{uuid.uuid4().hex[:12]}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await admin.close()
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        admin = await _admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database."""
    async with fresh_postgres() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a new SQLite file."""
    return f"sqlite:///{tmp_path / 'mailwarm.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind, in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailwarm.db'}"
        return
    async with fresh_postgres() as url:
        yield url


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    """A database of each kind with the schema applied (``mailwarm db upgrade``)."""
    await upgrade(database_url)
    return database_url


@pytest.fixture
def new_postgres() -> Callable[[], contextlib.AbstractAsyncContextManager[str]]:
    """``async with new_postgres() as url``: more fresh PostgreSQL databases in one test."""
    return fresh_postgres
