"""Single exchanges driven task by task: retries, provider errors, idempotency, the rescue flow.

Tasks are added by hand and run with ``run_due`` while the virtual clock is moved explicitly,
so every step of the executor can be observed.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

import mailwarm as mw
from mailwarm.engine import Capability
from mailwarm.providers.memory import Delivery, MemoryProvider

A = mw.ActivityAction
TS = mw.TaskStatus
EAGER = mw.EngagementSettings(
    open_rate=1.0, reply_rate=1.0, important_rate=1.0, star_rate=1.0, max_turns=2
)


@pytest.fixture
def pool(kit: Any) -> Any:
    return kit.make_pool(kit.make_accounts(4))


async def added(pool: Any, *tasks: mw.WarmupTask) -> list[mw.WarmupTask]:
    assert await pool.store.add_tasks(tasks) == len(tasks)
    return list(tasks)


async def fresh(pool: Any, task: mw.WarmupTask) -> mw.WarmupTask:
    stored = await pool.store.task(task.id)
    assert stored is not None
    return stored


async def actions(pool: Any, account_id: str | None = None) -> list[mw.ActivityAction]:
    return [a.action for a in await pool.store.activities(account_id)]


def received(pool: Any, account_id: str, folder: str | None = None) -> list[Any]:
    address = pool.by_id(account_id).address
    return [m for m in pool.network.messages(address, folder) if m.folder != "Sent"]


# -- retries ---------------------------------------------------------------------------------


async def test_transient_send_error_is_retried_with_backoff(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    pool.network.fail_next(a.address, "send", mw.TransientProviderError("451 busy"), times=2)
    (task,) = await added(pool, kit.send_task(a, b, pool.clock.now()))
    start = pool.clock.now()
    assert await pool.engine.run_due() == 1
    first = await fresh(pool, task)
    assert (first.status, first.attempts, first.last_error) == (TS.PENDING, 1, "451 busy")
    assert start + timedelta(seconds=1) <= first.due_at <= start + timedelta(seconds=60)
    assert await pool.engine.run_due() == 0  # not due again yet
    pool.clock.advance_to(first.due_at)
    await pool.engine.run_due()
    second = await fresh(pool, task)
    assert (second.status, second.attempts) == (TS.PENDING, 2)
    assert timedelta(seconds=1) <= second.due_at - first.due_at <= timedelta(seconds=120)
    assert A.SENT not in await actions(pool)
    pool.clock.advance_to(second.due_at)
    await pool.engine.run_due()
    done = await fresh(pool, task)
    assert (done.status, done.attempts) == (TS.DONE, 2)
    assert await actions(pool, a.id) == [A.SENT]
    assert len(received(pool, b.id, "INBOX")) == 1


async def test_rate_limited_waits_retry_after(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    pool.network.fail_next(a.address, "send", mw.RateLimited("slow down", retry_after=120))
    (task,) = await added(pool, kit.send_task(a, b, pool.clock.now()))
    start = pool.clock.now()
    await pool.engine.run_due()
    retried = await fresh(pool, task)
    assert retried.due_at == start + timedelta(seconds=120)
    assert retried.last_error is not None
    assert "rate limited" in retried.last_error
    assert await pool.advance(119) == 0
    assert A.SENT not in await actions(pool)
    assert await pool.advance(1) == 1
    assert await actions(pool, a.id) == [A.SENT]


async def test_rate_limited_without_retry_after_backs_off(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    pool.network.fail_next(a.address, "send", mw.RateLimited("slow down"))
    (task,) = await added(pool, kit.send_task(a, b, pool.clock.now()))
    start = pool.clock.now()
    await pool.engine.run_due()
    retried = await fresh(pool, task)
    assert retried.status is TS.PENDING
    assert start < retried.due_at <= start + timedelta(seconds=60)


async def test_attempts_exhausted_fail_the_task(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    pool.network.fail_next(a.address, "send", mw.TransientProviderError("timeout"), times=10)
    (task,) = await added(pool, kit.send_task(a, b, pool.clock.now(), max_attempts=3))
    for _ in range(3):
        pool.clock.advance_to((await fresh(pool, task)).due_at)
        assert await pool.engine.run_due() == 1
    failed = await fresh(pool, task)
    assert (failed.status, failed.attempts) == (TS.FAILED, 3)
    (activity,) = await pool.store.activities(a.id)
    assert activity.action is A.FAILED
    assert activity.task_id == task.id
    assert activity.detail == "gave up after 3 attempts: timeout"
    assert await pool.store.next_due() is None


async def test_transient_error_on_check_is_retried(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    pool.network.fail_next(b.address, "locate", mw.TransientProviderError("imap reset"))
    await added(pool, kit.send_task(a, b, pool.clock.now()))
    await pool.engine.run_due()
    (check,) = await pool.store.pending(b.id)
    assert check.kind is mw.TaskKind.CHECK
    pool.clock.advance_to(check.due_at)
    await pool.engine.run_due()
    retried = await fresh(pool, check)
    assert (retried.status, retried.attempts) == (TS.PENDING, 1)
    pool.clock.advance_to(retried.due_at)
    await pool.engine.run_due()
    delivered = [x for x in await pool.store.activities(a.id) if x.action is A.DELIVERED]
    assert [d.placement for d in delivered] == [mw.Placement.INBOX]


# -- errors that stop a task -----------------------------------------------------------------


async def test_auth_expired_disconnects_and_cancels_later_tasks(pool: Any, kit: Any) -> None:
    a, b, c = pool.accounts[:3]
    pool.network.fail_next(a.address, "send", mw.AuthExpired("invalid_grant"))
    now = pool.clock.now()
    first, later = await added(
        pool, kit.send_task(a, b, now), kit.send_task(a, c, now + timedelta(hours=1))
    )
    await pool.engine.run_due()
    account = pool.engine.accounts[a.id]
    assert account.status is mw.AccountStatus.DISCONNECTED
    assert account.status_reason is not None
    assert "invalid_grant" in account.status_reason
    assert "reconnect" in account.status_reason
    log = await pool.store.activities(a.id)
    assert [x.action for x in log] == [A.AUTH_FAILED, A.PAUSED]
    assert log[0].detail == "invalid_grant"
    assert log[0].task_id == first.id
    assert (await fresh(pool, first)).status is TS.FAILED
    await pool.advance(3600)
    cancelled = await fresh(pool, later)
    assert (cancelled.status, cancelled.last_error) == (TS.CANCELLED, "account is not active")
    assert pool.network.messages(a.address, "Sent") == []
    report = await pool.engine.health(a.id)
    assert report.state is mw.HealthState.PAUSED
    assert any("authentication" in r for r in report.reasons)
    # Other accounts carry on.
    await added(pool, kit.send_task(b, c, pool.clock.now()))
    await pool.engine.run_due()
    assert await actions(pool, b.id) == [A.SENT]


async def test_auth_expired_on_the_receiving_side(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    pool.network.fail_next(b.address, "locate", mw.AuthExpired("password changed"))
    await added(pool, kit.send_task(a, b, pool.clock.now()))
    await pool.engine.run_due()
    (check,) = await pool.store.pending(b.id)
    pool.clock.advance_to(check.due_at)
    await pool.engine.run_due()
    assert pool.engine.accounts[b.id].status is mw.AccountStatus.DISCONNECTED
    assert pool.engine.accounts[a.id].status is mw.AccountStatus.ACTIVE


async def test_a_misconfigured_account_stops_instead_of_bouncing(pool: Any, kit: Any) -> None:
    a, b, c = pool.accounts[:3]
    error = mw.AccountMisconfigured("enable the Gmail API in the OAuth client's project")
    pool.network.fail_next(a.address, "send", error)
    now = pool.clock.now()
    first, later = await added(
        pool, kit.send_task(a, b, now), kit.send_task(a, c, now + timedelta(hours=1))
    )
    await pool.engine.run_due()
    account = pool.engine.accounts[a.id]
    assert account.status is mw.AccountStatus.ERROR
    assert account.status_reason is not None
    assert "enable the Gmail API" in account.status_reason
    assert [x.action for x in await pool.store.activities(a.id)] == [A.FAILED, A.PAUSED]
    assert (await pool.engine.health(a.id)).inputs["bounced"] == 0  # not the recipient's fault
    assert (await fresh(pool, first)).status is TS.FAILED
    await pool.advance(3600)
    assert (await fresh(pool, later)).status is TS.CANCELLED
    # Its reservation was given back: the day's cap still has every slot.
    assert await pool.store.sends_on(a.id, now.astimezone(a.zone).date()) == 0


async def test_permanent_error_on_send_bounces(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    pool.network.fail_next(a.address, "send", mw.PermanentProviderError("554 rejected"))
    (task,) = await added(pool, kit.send_task(a, b, pool.clock.now()))
    await pool.engine.run_due()
    assert (await fresh(pool, task)).status is TS.FAILED
    (bounce,) = await pool.store.activities(a.id)
    assert bounce.action is A.BOUNCED
    assert (bounce.peer_id, bounce.detail) == (b.id, "554 rejected")
    assert bounce.message_id == task.message_id is not None
    assert (await pool.engine.health(a.id)).inputs["bounced"] == 1


async def test_unknown_recipient_bounces(kit: Any) -> None:
    accounts = kit.make_accounts(3)
    pool = kit.make_pool(accounts[:2])
    pool.engine.accounts[accounts[2].id] = accounts[2]  # known to the engine, not to the network
    await added(pool, kit.send_task(accounts[0], accounts[2], pool.clock.now()))
    await pool.engine.run_due()
    (bounce,) = await pool.store.activities(accounts[0].id)
    assert bounce.action is A.BOUNCED
    assert bounce.detail is not None
    assert "does not exist" in bounce.detail


async def test_quota_exhausted_defers_a_send(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    pool.network.fail_next(a.address, "send", mw.QuotaExhausted("daily quota used"))
    (task,) = await added(pool, kit.send_task(a, b, pool.clock.now()))
    await pool.engine.run_due()
    assert (await fresh(pool, task)).status is TS.CANCELLED
    assert await actions(pool, a.id) == [A.DEFERRED]


async def test_non_retryable_provider_error_fails(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    pool.network.fail_next(a.address, "send", mw.ProviderError("odd failure"))
    (task,) = await added(pool, kit.send_task(a, b, pool.clock.now()))
    await pool.engine.run_due()
    assert (await fresh(pool, task)).status is TS.FAILED
    assert await actions(pool, a.id) == [A.FAILED]


async def test_long_provider_errors_are_clipped_not_fatal(pool: Any, kit: Any) -> None:
    a, b, c = pool.accounts[:3]
    page = "<html>" + "x" * 5000  # an API's error page quoted in full
    pool.network.fail_next(a.address, "send", mw.PermanentProviderError(page))
    pool.network.fail_next(b.address, "send", mw.AuthExpired(page))
    pool.network.fail_next(c.address, "send", mw.TransientProviderError(page))
    now = pool.clock.now()
    tasks = await added(
        pool,
        kit.send_task(a, b, now),
        kit.send_task(b, c, now),
        kit.send_task(c, a, now, max_attempts=1),
    )
    assert await pool.engine.run_due() == 3
    log = await pool.store.activities()
    assert [x.action for x in log] == [A.BOUNCED, A.AUTH_FAILED, A.PAUSED, A.FAILED]
    for entry in log:
        assert entry.detail is not None
        assert 100 < len(entry.detail) <= 2000
    assert log[0].detail.startswith("<html>xxx")
    assert [(await fresh(pool, t)).status for t in tasks] == [TS.FAILED] * 3


async def test_missing_message_is_recorded_after_a_few_checks(pool: Any) -> None:
    a, b = pool.accounts[:2]
    check = mw.WarmupTask(
        account_id=b.id,
        kind=mw.TaskKind.CHECK,
        due_at=pool.clock.now(),
        idempotency_key="check:never-sent",
        peer_id=a.id,
        message_id="<never-sent@company0.com>",
    )
    await added(pool, check)
    for _ in range(10):
        due = await pool.store.next_due()
        if due is None:
            break
        pool.clock.advance_to(due)
        await pool.engine.run_due()
    done = await fresh(pool, check)
    assert (done.status, done.attempts) == (TS.DONE, 3)
    (missing,) = await pool.store.activities(a.id)
    assert (missing.action, missing.placement) == (A.DELIVERED, mw.Placement.MISSING)


# -- idempotency and caps --------------------------------------------------------------------


async def test_replayed_send_task_never_sends_twice(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    (task,) = await added(pool, kit.send_task(a, b, pool.clock.now()))
    assert await pool.engine.run_due() == 1
    assert await pool.engine.run_due() == 0
    assert await pool.store.add_tasks([task]) == 0  # same idempotency key
    # A replay of the same task (a crash before its status was saved): the ledger stops it.
    await pool.store.save_task(task.model_copy(update={"status": TS.PENDING}))
    assert await pool.engine.run_due() == 1
    assert (await fresh(pool, task)).last_error == "already sent"
    assert await actions(pool, a.id) == [A.SENT]
    assert len(received(pool, b.id)) == 1


async def test_concurrent_run_due_claims_each_task_once(pool: Any, kit: Any) -> None:
    a, b, c, d = pool.accounts
    now = pool.clock.now()
    await added(pool, *(kit.send_task(s, r, now) for s, r in ((a, b), (b, c), (c, d), (d, a))))
    counts = await asyncio.gather(*(pool.engine.run_due() for _ in range(3)))
    assert sum(counts) == 4
    assert [x.action for x in await pool.store.activities()].count(A.SENT) == 4
    assert sum(len(received(pool, x.id)) for x in pool.accounts) == 4


async def test_daily_cap_holds_at_execution_time(kit: Any) -> None:
    accounts = kit.make_accounts(5, zones=("UTC",), daily_cap=2)
    pool = kit.make_pool(accounts)
    a, *others = accounts
    now = pool.clock.now() + timedelta(hours=9)
    tasks = await added(
        pool, *(kit.send_task(a, r, now + timedelta(minutes=i)) for i, r in enumerate(others))
    )
    await pool.advance(10 * 3600)
    statuses = [(await fresh(pool, t)).last_error for t in tasks]
    assert statuses == [None, None, "daily cap reached", "daily cap reached"]
    assert await pool.store.sends_on(a.id, kit.START.date()) == 2
    # The next local day has a fresh allowance.
    tomorrow = kit.START + timedelta(days=1, hours=9)
    await added(pool, kit.send_task(a, others[0], tomorrow))
    await pool.advance(24 * 3600)
    assert [x.action for x in await pool.store.activities(a.id)].count(A.SENT) == 3


class SlowMemoryProvider(MemoryProvider):
    """Yields to the event loop inside send, like a provider waiting on the network."""

    async def send(self, message: mw.OutgoingMessage) -> mw.MessageRef:
        await asyncio.sleep(0)
        return await super().send(message)


async def test_daily_cap_holds_for_concurrent_sends(kit: Any) -> None:
    accounts = kit.make_accounts(5, zones=("UTC",), daily_cap=1)
    pool = kit.make_pool(accounts, account_concurrency=4)
    pool.engine._provider_factory = lambda account: SlowMemoryProvider(account, pool.network)
    a, *others = accounts
    now = pool.clock.now()
    await added(pool, *(kit.send_task(a, r, now) for r in others))
    assert await pool.engine.run_due() == 4
    assert await actions(pool, a.id) == [A.SENT]
    assert await pool.store.sends_on(a.id, now.date()) == 1
    assert sum(len(received(pool, r.id)) for r in others) == 1


async def test_planning_twice_a_day_adds_nothing(pool: Any) -> None:
    plan = await pool.engine.plan()
    assert plan is not None
    assert plan.total_sends > 0
    before = len(await pool.store.all_tasks())
    assert before > 0
    assert await pool.engine.plan() is None
    assert len(await pool.store.all_tasks()) == before
    # Planned sends all lie in the future and carry deterministic ids and Message-IDs.
    assert all(t.due_at >= pool.clock.now() for t in await pool.store.pending())
    assert all(t.message_id for t in await pool.store.pending())


# -- the rescue flow, step by step -----------------------------------------------------------


async def step(pool: Any) -> list[mw.WarmupTask]:
    """Run the next due moment; returns the tasks still pending after it."""
    due = await pool.store.next_due()
    assert due is not None
    pool.clock.advance_to(due)
    await pool.engine.run_due()
    pending: list[mw.WarmupTask] = await pool.store.pending()
    return pending


async def test_spam_rescue_then_engagement_on_the_moved_message(kit: Any) -> None:
    accounts = kit.make_accounts(2)
    a, b = accounts

    def to_spam(delivery: Delivery) -> mw.Placement:
        return mw.Placement.SPAM if delivery.recipient == b.address else mw.Placement.INBOX

    pool = kit.make_pool(accounts, placement=to_spam, settings=mw.PoolSettings(engagement=EAGER))
    (send,) = await added(pool, kit.send_task(a, b, pool.clock.now()))
    await pool.engine.run_due()
    (junk,) = received(pool, b.id)
    assert junk.folder == "Junk"
    old_uid = junk.uid
    (check,) = await pool.store.pending()
    assert (check.kind, check.account_id, check.message_id) == (
        mw.TaskKind.CHECK,
        b.id,
        send.message_id,
    )
    (rescue,) = await step(pool)
    assert rescue.kind is mw.TaskKind.RESCUE
    (delivered,) = [x for x in await pool.store.activities(a.id) if x.action is A.DELIVERED]
    assert delivered.placement is mw.Placement.SPAM
    (engage,) = await step(pool)
    assert engage.kind is mw.TaskKind.ENGAGE
    (moved,) = received(pool, b.id)
    assert (moved.folder, moved.flags) == ("INBOX", set())
    assert moved.uid != old_uid
    (reply,) = await step(pool)
    assert reply.kind is mw.TaskKind.REPLY
    assert moved.flags == {"\\Seen", "$Important", "\\Flagged"}
    assert await actions(pool, b.id) == [
        A.RESCUED_FROM_SPAM,
        A.OPENED,
        A.MARKED_IMPORTANT,
        A.STARRED,
    ]
    (check_back,) = await step(pool)
    assert (check_back.kind, check_back.account_id) == (mw.TaskKind.CHECK, a.id)
    (answer,) = received(pool, a.id)
    assert answer.in_reply_to == send.message_id
    assert answer.references == (send.message_id,)
    assert answer.thread_id == pool.network.messages(a.address, "Sent")[0].thread_id
    # a's reply: opened, but max_turns=2 ends the thread there.
    (_engage_back,) = await step(pool)
    assert await step(pool) == []
    assert await pool.store.next_due() is None
    assert "\\Seen" in answer.flags
    assert [x.action for x in await pool.store.activities(b.id)][-1] is A.DELIVERED


class NoExtras(MemoryProvider):
    """A mailbox that can only send, read and locate (no spam rescue, flags or importance)."""

    supported = frozenset()


async def test_missing_capabilities_are_skipped(kit: Any) -> None:
    accounts = kit.make_accounts(2)
    a, b = accounts
    pool = kit.make_pool(
        accounts,
        placement=lambda d: mw.Placement.INBOX,
        settings=mw.PoolSettings(engagement=EAGER.model_copy(update={"reply_rate": 0.0})),
    )
    pool.engine._provider_factory = lambda account: NoExtras(account, pool.network)
    assert Capability.FLAG not in pool.engine.provider(b.id).capabilities
    await added(pool, kit.send_task(a, b, pool.clock.now()))
    while await pool.store.next_due() is not None:
        await step(pool)
    assert await actions(pool, b.id) == [A.OPENED]
    (copy,) = received(pool, b.id)
    assert copy.flags == {"\\Seen"}


async def test_spam_stays_unopened_without_rescue(kit: Any) -> None:
    accounts = kit.make_accounts(2)
    a, b = accounts
    pool = kit.make_pool(
        accounts,
        placement=lambda d: mw.Placement.SPAM,
        settings=mw.PoolSettings(engagement=EAGER),
    )
    pool.engine._provider_factory = lambda account: NoExtras(account, pool.network)
    await added(pool, kit.send_task(a, b, pool.clock.now()))
    while await pool.store.next_due() is not None:
        await step(pool)
    assert await actions(pool, b.id) == []
    assert [x.placement for x in await pool.store.activities(a.id)] == [None, mw.Placement.SPAM]
    (copy,) = received(pool, b.id)
    assert (copy.folder, copy.flags) == ("Junk", set())


# -- account control -------------------------------------------------------------------------


async def test_pause_cancels_and_resume_restarts(pool: Any, kit: Any) -> None:
    a, b = pool.accounts[:2]
    (task,) = await added(pool, kit.send_task(a, b, pool.clock.now() + timedelta(minutes=5)))
    await pool.engine.pause(a.id, "owner asked")
    await pool.engine.pause(a.id, "owner asked")  # no second entry
    await pool.advance(600)
    assert (await fresh(pool, task)).status is TS.CANCELLED
    assert pool.engine.accounts[a.id].status_reason == "owner asked"
    await pool.engine.resume(a.id)
    assert pool.engine.accounts[a.id].status is mw.AccountStatus.ACTIVE
    assert pool.engine.accounts[a.id].status_reason is None
    assert await actions(pool, a.id) == [A.PAUSED, A.RESUMED]


async def test_duplicate_account_ids_are_rejected(kit: Any) -> None:
    accounts = kit.make_accounts(2)
    with pytest.raises(mw.ConfigurationError, match="appears twice"):
        kit.make_pool([accounts[0], accounts[1], accounts[0]])


async def test_aclose_closes_every_provider_once(pool: Any) -> None:
    providers = [pool.engine.provider(a.id) for a in pool.accounts]
    assert pool.engine.provider(pool.accounts[0].id) is providers[0]
    async with pool.engine:
        pass
    assert all(p.closed for p in providers)
    await pool.engine.aclose()
