"""The engine on a database: the same run as in memory, and a restart picks up where it was."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import mailwarm as mw
from mailwarm.engine import MemoryStore, Store
from mailwarm.providers.memory import MemoryNetwork
from mailwarm.storage._store import SqlStore

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
ACCOUNTS = [
    mw.EmailAccount(id=f"a{i}", address=f"user{i}@company{i}.example", daily_cap=8)
    for i in range(5)
]


async def run_days(store: Store, days: float, *, clock: mw.VirtualClock | None = None) -> Any:
    clock = clock or mw.VirtualClock(START)
    network = MemoryNetwork(clock)
    network.add_accounts(ACCOUNTS)
    async with mw.WarmupEngine(ACCOUNTS, network.provider, clock=clock, seed=3, store=store) as e:
        await e.run_until(START + timedelta(days=days))
    return sorted(
        (a.account_id, a.action.value, a.message_id or "", a.peer_id or "", a.at)
        for a in await store.activities()
    )


async def test_a_run_on_a_database_matches_the_same_run_in_memory(migrated_url: str) -> None:
    expected = await run_days(MemoryStore(), 3)
    assert sum(1 for _, action, *_ in expected if action == "sent") > 20
    url = migrated_url
    async with contextlib.AsyncExitStack() as stack:
        store = SqlStore(url)
        stack.push_async_callback(store.aclose)
        assert await run_days(store, 3) == expected
        tasks = await store.all_tasks()
        assert {t.status for t in tasks} <= {
            mw.TaskStatus.DONE,
            mw.TaskStatus.PENDING,
            mw.TaskStatus.CANCELLED,
            mw.TaskStatus.FAILED,
        }
