"""Schema migrations: Alembic, with the scripts shipped inside the package."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from mailwarm.storage._database import create_engine, normalise_url

__all__ = ["current_revision", "downgrade", "head_revision", "upgrade"]


def _config(url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", "mailwarm.storage:migrations")
    # Alembic reads the URL through ConfigParser: a literal % must be doubled.
    rendered = normalise_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


async def upgrade(url: str | URL, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (default: the newest)."""
    await asyncio.to_thread(command.upgrade, _config(url), revision)


async def downgrade(url: str | URL, revision: str) -> None:
    """Revert migrations down to ``revision`` (``base`` empties the database)."""
    await asyncio.to_thread(command.downgrade, _config(url), revision)


def head_revision() -> str:
    """The newest revision the package ships."""
    script = ScriptDirectory.from_config(_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


async def current_revision(url: str | URL) -> str | None:
    """The revision a database is at (``None``: no mailwarm schema yet)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
