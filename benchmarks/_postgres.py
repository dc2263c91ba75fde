"""Shared by the PostgreSQL benchmarks: connections, logging, and a parallel bulk loader."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url


def account_id(i: int) -> str:
    """A 32-character account id, the same in every run."""
    return hashlib.md5(f"account{i}".encode()).hexdigest()


def log(message: str) -> None:
    print(message, flush=True)


def plain(url: str) -> str:
    """The asyncpg form of a SQLAlchemy PostgreSQL URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def admin_connect(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )


async def load_in_parallel(
    url: str,
    rows: int,
    chunk: int,
    statement: str,
    arguments: Callable[[int, int], tuple[Any, ...]],
    *,
    loaders: int = 2,
) -> None:
    """Run ``statement`` with ``arguments(lo, hi)`` for each chunk of ``rows``, on ``loaders``
    connections at once (the server generates the rows: seconds for millions, not hours)."""
    chunks = [(lo, min(lo + chunk, rows)) for lo in range(0, rows, chunk)]
    done = 0
    started = time.perf_counter()

    async def loader() -> None:
        nonlocal done
        worker = await asyncpg.connect(plain(url))
        try:
            await worker.execute("SET synchronous_commit = off")
            while chunks:
                lo, hi = chunks.pop(0)
                await worker.execute(statement, *arguments(lo, hi))
                done += hi - lo
                rate = done / (time.perf_counter() - started)
                log(f"  loaded {done:>12,} / {rows:,} activities ({rate:,.0f} rows/s)")
        finally:
            await worker.close()

    await asyncio.gather(*(loader() for _ in range(loaders)))
