"""Migrations: they build exactly the models' schema, on SQLite and PostgreSQL, and revert."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from mailwarm.storage._database import create_engine
from mailwarm.storage._migrate import current_revision, downgrade, head_revision, upgrade
from mailwarm.storage._schema import metadata


async def _differences(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_migrations_build_exactly_the_models_schema(database_url: str) -> None:
    assert await current_revision(database_url) is None
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision()
    assert await _differences(database_url) == []
    assert await _tables(database_url) == set(metadata.tables) | {"alembic_version"}


async def test_an_empty_database_differs_from_the_models(database_url: str) -> None:
    # The comparison above can fail: on an empty database it lists every table as missing.
    missing = {d[1].name for d in await _differences(database_url) if d[0] == "add_table"}
    assert missing == set(metadata.tables)


async def test_upgrade_and_downgrade_round_trip(database_url: str) -> None:
    await upgrade(database_url)
    await downgrade(database_url, "base")
    assert await current_revision(database_url) is None
    assert await _tables(database_url) <= {"alembic_version"}
    await upgrade(database_url)
    assert await _differences(database_url) == []
    # Upgrading an up-to-date database is a no-op.
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision()
