"""Shared builders for the engine tests: pools of accounts, a virtual clock, engine runs.

Test modules get the builders through the ``kit`` fixture (never ``import conftest``: every
test directory has its own conftest module).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import mailwarm as mw
from mailwarm import WarmupTask
from mailwarm.content import make_message_id
from mailwarm.engine import MemoryStore
from mailwarm.engine._actions import task_id_for
from mailwarm.providers.memory import MemoryNetwork, PlacementPolicy, tag_policy

# Monday 2 November 2026, midnight UTC: no DST change in Berlin, New York or Tokyo for weeks.
START = datetime(2026, 11, 2, tzinfo=UTC)
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
PROVIDERS = ("gmail", "graph")
FIRST = ("anna", "ben", "carla", "david", "elena", "farid", "grace", "hugo", "iris", "jonas")


def make_accounts(
    n: int,
    *,
    providers: Sequence[str] = PROVIDERS,
    zones: Sequence[str] = ZONES,
    orgs: int | None = None,
    strategy: dict[str, Any] | None = None,
    **fields: Any,
) -> list[mw.EmailAccount]:
    """``n`` accounts ``a00``, ``a01``... on ``orgs`` domains (default: one domain each),
    cycling through ``providers`` and ``zones``."""
    orgs = orgs or n
    return [
        mw.EmailAccount(
            id=f"a{i:02d}",
            address=f"{FIRST[i % len(FIRST)]}{i}@company{i % orgs}.com",
            provider=providers[i % len(providers)],
            timezone=zones[i % len(zones)],
            strategy=strategy,
            **fields,
        )
        for i in range(n)
    ]


def constant(sends: int) -> dict[str, Any]:
    """A strategy spec asking for ``sends`` every day."""
    return {"kind": "linear", "start": sends, "step": 0, "cap": max(sends, 1)}


def local_day(account: mw.EmailAccount, when: datetime) -> date:
    return when.astimezone(account.zone).date()


@dataclass
class Pool:
    """An engine on a memory network, driven by a virtual clock."""

    clock: mw.VirtualClock
    network: MemoryNetwork
    engine: mw.WarmupEngine
    accounts: list[mw.EmailAccount]

    @property
    def store(self) -> MemoryStore:
        store = self.engine.store
        assert isinstance(store, MemoryStore)
        return store

    def by_id(self, account_id: str) -> mw.EmailAccount:
        return self.engine.accounts[account_id]

    async def activities(self) -> list[mw.Activity]:
        return await self.store.activities()

    async def run_days(self, days: float) -> None:
        await self.engine.run_until(self.clock.now() + timedelta(days=days))

    async def advance(self, seconds: float) -> int:
        """Move the clock on and run whatever is due (no planning)."""
        self.clock.advance_to(self.clock.now() + timedelta(seconds=seconds))
        return await self.engine.run_due()


def make_pool(
    accounts: list[mw.EmailAccount],
    *,
    seed: int = 7,
    placement: PlacementPolicy = tag_policy,
    start: datetime = START,
    **engine_options: Any,
) -> Pool:
    clock = mw.VirtualClock(start)
    network = MemoryNetwork(clock, placement=placement)
    network.add_accounts(accounts)
    engine = mw.WarmupEngine(accounts, network.provider, clock=clock, seed=seed, **engine_options)
    return Pool(clock, network, engine, accounts)


def send_task(
    sender: mw.EmailAccount,
    recipient: mw.EmailAccount,
    due: datetime,
    key: str | None = None,
    **fields: Any,
) -> WarmupTask:
    """A send task built the way the engine's planner builds one."""
    key = key or f"send:{sender.id}:manual:{recipient.id}:{due.isoformat()}"
    return WarmupTask(
        id=task_id_for(key),
        account_id=sender.id,
        kind=mw.TaskKind.SEND,
        due_at=due,
        idempotency_key=key,
        peer_id=recipient.id,
        message_id=make_message_id(b"tests", key, sender.address, recipient.address),
        **fields,
    )


def run(coro_fn: Callable[[], Any]) -> Any:
    """Run an async builder from a synchronous (module-scoped) fixture."""
    return asyncio.run(coro_fn())


class Kit:
    """The builders above, handed to tests by the ``kit`` fixture."""

    START = START
    ZONES = ZONES
    make_accounts = staticmethod(make_accounts)
    make_pool = staticmethod(make_pool)
    send_task = staticmethod(send_task)
    constant = staticmethod(constant)
    local_day = staticmethod(local_day)
    run = staticmethod(run)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit


@pytest.fixture
def clock() -> mw.VirtualClock:
    return mw.VirtualClock(START)
