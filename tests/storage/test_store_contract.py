"""The engine's Store contract, run over every backend: in memory, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import mailwarm as mw
from mailwarm.engine import Conversation, MemoryStore, SendReservation, Store
from mailwarm.storage._migrate import upgrade
from mailwarm.storage._store import SqlStore

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = date(2026, 11, 2)
LEASE = timedelta(days=2)  # longer than any test's clock: the lease has its own test
ACCOUNTS = [mw.EmailAccount(id=f"a{i}", address=f"user{i}@c{i}.example") for i in range(3)]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: object, new_postgres: Any
) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
        await upgrade(url)
        sql = SqlStore(url, lease=LEASE)
        await sql.attach(ACCOUNTS)
        yield sql
        await sql.aclose()
        return
    async with new_postgres() as url:
        await upgrade(url)
        sql = SqlStore(url, lease=LEASE)
        await sql.attach(ACCOUNTS)
        yield sql
        await sql.aclose()


def task(
    n: int, *, due: datetime = T0, account: str = "a0", key: str | None = None
) -> mw.WarmupTask:
    return mw.WarmupTask(
        account_id=account,
        kind=mw.TaskKind.SEND,
        due_at=due,
        idempotency_key=key or f"send:{n}",
        peer_id="a1",
    )


async def test_add_tasks_skips_known_idempotency_keys(store: Store) -> None:
    assert await store.add_tasks([task(1), task(2)]) == 2
    assert await store.add_tasks([task(3, key="send:1"), task(4)]) == 1
    assert await store.add_tasks([]) == 0
    assert {t.idempotency_key for t in await store.pending()} == {"send:1", "send:2", "send:4"}


async def test_claim_due_takes_due_tasks_earliest_first_once(store: Store) -> None:
    late = task(1, due=T0 + timedelta(hours=2))
    early = task(2, due=T0 - timedelta(minutes=5))
    now = task(3, due=T0)
    await store.add_tasks([late, early, now])
    assert await store.next_due() == early.due_at
    claimed = await store.claim_due(T0, 10)
    assert [t.id for t in claimed] == [early.id, now.id]
    assert all(t.status is mw.TaskStatus.RUNNING for t in claimed)
    assert await store.claim_due(T0, 10) == []
    assert [t.id for t in await store.pending()] == [late.id]
    assert await store.next_due() == late.due_at
    assert [t.id for t in await store.claim_due(T0 + timedelta(days=1), 10)] == [late.id]


async def test_claim_due_respects_the_limit(store: Store) -> None:
    await store.add_tasks([task(n, due=T0 + timedelta(seconds=n)) for n in range(5)])
    first = await store.claim_due(T0 + timedelta(minutes=1), 2)
    second = await store.claim_due(T0 + timedelta(minutes=1), 10)
    assert [t.idempotency_key for t in first] == ["send:0", "send:1"]
    assert [t.idempotency_key for t in second] == ["send:2", "send:3", "send:4"]


async def test_saved_task_state_round_trips(store: Store) -> None:
    await store.add_tasks([task(1)])
    (claimed,) = await store.claim_due(T0, 1)
    retry = claimed.model_copy(
        update={
            "status": mw.TaskStatus.PENDING,
            "attempts": 2,
            "due_at": T0 + timedelta(hours=1),
            "last_error": "421 try later",
            "message_id": "<m1@c0.example>",
        }
    )
    await store.save_task(retry)
    (pending,) = await store.pending("a0")
    assert pending == retry
    assert pending.due_at.tzinfo is not None
    assert await store.pending("a1") == []
    done = retry.model_copy(update={"status": mw.TaskStatus.DONE})
    await store.save_task(done)
    assert await store.pending() == []
    assert await store.claim_due(T0 + timedelta(days=1), 10) == []


async def test_activities_in_time_order_filtered_and_recorded_once(store: Store) -> None:
    def activity(n: int, account: str) -> mw.Activity:
        return mw.Activity(
            id=f"act{n}",
            account_id=account,
            action=mw.ActivityAction.SENT,
            at=T0 + timedelta(minutes=n),
            placement=mw.Placement.INBOX if n % 2 else None,
            detail="d" * 10,
        )

    for n, account in [(0, "a1"), (1, "a0"), (2, "a0")]:
        await store.record(activity(n, account))
    await store.record(activity(1, "a0").model_copy(update={"detail": "second write"}))
    everything = await store.activities()
    assert [a.id for a in everything] == ["act0", "act1", "act2"]
    assert everything[1].detail == "d" * 10
    assert everything[1].placement is mw.Placement.INBOX
    assert [a.id for a in await store.activities("a0")] == ["act1", "act2"]
    assert [a.id for a in await store.activities(since=T0 + timedelta(minutes=1))] == [
        "act1",
        "act2",
    ]


async def test_send_reservations_follow_the_ledger(store: Store) -> None:
    assert await store.reserve_send("k1", "a0", "<m1@x>", DAY, 5) is SendReservation.RESERVED
    assert await store.ledger_get("k1") == "<m1@x>"
    assert await store.sends_on("a0", DAY) == 1
    # Not confirmed: a later attempt must reconcile before resending.
    assert await store.reserve_send("k1", "a0", "<m1@x>", DAY, 5) is SendReservation.IN_DOUBT
    await store.confirm_send("k1")
    assert await store.reserve_send("k1", "a0", "<m1@x>", DAY, 5) is SendReservation.SENT
    assert await store.sends_on("a0", DAY) == 1
    # A release gives the slot back, and only for a reservation (never for a sent message).
    assert await store.reserve_send("k2", "a0", "<m2@x>", DAY, 5) is SendReservation.RESERVED
    assert await store.sends_on("a0", DAY) == 2
    await store.release_send("k2")
    assert await store.ledger_get("k2") is None
    assert await store.sends_on("a0", DAY) == 1
    await store.release_send("k1")
    assert await store.ledger_get("k1") == "<m1@x>"
    assert await store.sends_on("a0", DAY) == 1
    # Possibly sent counts as sent.
    assert await store.reserve_send("k3", "a0", "<m3@x>", None, None) is SendReservation.RESERVED
    await store.confirm_send("k3", unconfirmed=True)
    assert await store.reserve_send("k3", "a0", "<m3@x>", None, None) is SendReservation.SENT
    assert await store.sends_on("a0", DAY) == 1  # replies (no day) do not count


async def test_daily_cap_is_per_account_and_day(store: Store) -> None:
    for n in range(3):
        assert (
            await store.reserve_send(f"k{n}", "a0", f"<{n}@x>", DAY, 3) is SendReservation.RESERVED
        )
    assert await store.reserve_send("k9", "a0", "<9@x>", DAY, 3) is SendReservation.CAP_REACHED
    assert await store.ledger_get("k9") is None  # a refused reservation leaves no trace
    next_day = DAY + timedelta(days=1)
    assert await store.reserve_send("k9", "a0", "<9@x>", next_day, 3) is SendReservation.RESERVED
    assert await store.reserve_send("k8", "a1", "<8@x>", DAY, 3) is SendReservation.RESERVED
    assert (await store.sends_on("a0", DAY), await store.sends_on("a0", next_day)) == (3, 1)


async def test_concurrent_reservations_never_pass_the_cap(store: Store) -> None:
    results = await asyncio.gather(
        *(store.reserve_send(f"k{n}", "a0", f"<{n}@x>", DAY, 40) for n in range(60))
    )
    assert results.count(SendReservation.RESERVED) == 40
    assert results.count(SendReservation.CAP_REACHED) == 20
    assert await store.sends_on("a0", DAY) == 40


async def test_conversations_and_planning_marks(store: Store) -> None:
    conversation = Conversation("<m1@x>", "intro", "Hello", "a0", "a1", ["<m1@x>"])
    await store.save_conversation(conversation)
    conversation.message_ids.append("<m2@x>")
    await store.save_conversation(conversation)
    found = await store.get_conversation("<m1@x>")
    assert found == Conversation("<m1@x>", "intro", "Hello", "a0", "a1", ["<m1@x>", "<m2@x>"])
    assert await store.get_conversation("<nope@x>") is None
    assert await store.planned_through("a0") is None
    await store.set_planned_through("a0", DAY)
    await store.set_planned_through("a0", DAY + timedelta(days=1))
    assert await store.planned_through("a0") == DAY + timedelta(days=1)


async def test_a_claim_older_than_the_lease_is_taken_over(migrated_url: str) -> None:
    url = migrated_url
    async with contextlib.AsyncExitStack() as stack:
        store = SqlStore(url, lease=timedelta(minutes=15))
        stack.push_async_callback(store.aclose)
        await store.attach(ACCOUNTS)
        await store.add_tasks([task(1)])
        (first,) = await store.claim_due(T0, 10)
        # Its process died: nobody saves it. Within the lease nobody else may take it...
        assert await store.claim_due(T0 + timedelta(minutes=14), 10) == []
        # ...after it, the next claim does (the send ledger keeps the send itself single).
        (again,) = await store.claim_due(T0 + timedelta(minutes=16), 10)
        assert again.id == first.id
        assert await store.claim_due(T0 + timedelta(minutes=20), 10) == []


async def test_concurrent_claimers_never_take_one_task_twice(migrated_url: str) -> None:
    url = migrated_url
    async with contextlib.AsyncExitStack() as stack:
        # Four stores, four connection pools: as four schedulers or workers would be.
        stores = [SqlStore(url) for _ in range(4)]
        for store in stores:
            stack.push_async_callback(store.aclose)
        await stores[0].attach(ACCOUNTS)
        await stores[0].add_tasks([task(n, due=T0 + timedelta(seconds=n)) for n in range(200)])

        async def drain(store: SqlStore) -> list[str]:
            taken: list[str] = []
            while batch := await store.claim_due(T0 + timedelta(hours=1), 7):
                taken.extend(t.id for t in batch)
                await asyncio.sleep(0)
            return taken

        results = await asyncio.gather(*(drain(s) for s in stores))
        everything = [task_id for taken in results for task_id in taken]
        assert len(everything) == 200
        assert len(set(everything)) == 200
        assert sum(1 for taken in results if taken) >= 2  # they really did compete


async def test_concurrent_stores_never_pass_the_daily_cap(migrated_url: str) -> None:
    url = migrated_url
    async with contextlib.AsyncExitStack() as stack:
        stores = [SqlStore(url) for _ in range(20)]
        for store in stores:
            stack.push_async_callback(store.aclose)
        # 20 workers, 3 sends each, cap 40: exactly 40 go through, never 41.
        results = await asyncio.gather(
            *(stores[n % 20].reserve_send(f"k{n}", "a0", f"<{n}@x>", DAY, 40) for n in range(60))
        )
        assert results.count(SendReservation.RESERVED) == 40
        assert await stores[0].sends_on("a0", DAY) == 40
