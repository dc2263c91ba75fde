"""The engine end to end on a memory network and a virtual clock: one simulated week.

Monday to Sunday: sends happen on weekdays only, so by Sunday every follow-up (checks,
rescues, opens, replies) has run and the log can be checked as a whole. All mail to one
account (``SPAMMY``) lands in its spam folder.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

import mailwarm as mw
from mailwarm.providers.memory import Delivery, MemoryNetwork, StoredMessage

A = mw.ActivityAction
SPAMMY = "a05"
ENGAGEMENT = mw.EngagementSettings(
    open_rate=0.7, reply_rate=0.4, important_rate=0.3, star_rate=0.15, max_turns=3
)


@dataclass
class WeekRun:
    pool: Any
    activities: list[mw.Activity]
    tasks: list[mw.WarmupTask]
    mid: list[tuple[datetime, list[mw.WarmupTask]]]  # (now, pending tasks) snapshots
    sleeps: list[float]
    elapsed: float

    @property
    def network(self) -> MemoryNetwork:
        network: MemoryNetwork = self.pool.network
        return network

    def of(self, action: mw.ActivityAction) -> list[mw.Activity]:
        return [a for a in self.activities if a.action is action]

    def copy_in(self, account_id: str, message_id: str) -> StoredMessage:
        """The received copy of a message in an account's mailbox."""
        address = self.pool.by_id(account_id).address
        copies = [
            m
            for m in self.network.messages(address)
            if m.message_id == message_id and m.folder != "Sent"
        ]
        assert len(copies) == 1, (account_id, message_id, copies)
        return copies[0]

    def sent_copy(self, account_id: str, message_id: str) -> StoredMessage:
        address = self.pool.by_id(account_id).address
        (copy,) = [m for m in self.network.messages(address, "Sent") if m.message_id == message_id]
        return copy


def spam_to(address: str) -> Any:
    def policy(delivery: Delivery) -> mw.Placement:
        return mw.Placement.SPAM if delivery.recipient == address else mw.Placement.INBOX

    return policy


@pytest.fixture(scope="module")
def week(kit: Any) -> WeekRun:
    accounts = kit.make_accounts(12, strategy=kit.constant(6))
    accounts[3] = accounts[3].model_copy(update={"daily_cap": 4})
    pool = kit.make_pool(
        accounts,
        seed=11,
        placement=spam_to(accounts[5].address),
        settings=mw.PoolSettings(engagement=ENGAGEMENT),
    )
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        sleeps.append(delay)
        return await real_sleep(delay, *args, **kwargs)

    async def scenario() -> WeekRun:
        started = time.perf_counter()
        mid = []
        for hour in range(8, 24, 2):  # snapshots through the second day
            await pool.engine.run_until(kit.START + timedelta(days=1, hours=hour))
            mid.append((pool.clock.now(), await pool.store.pending()))
        await pool.engine.run_until(kit.START + timedelta(days=6, hours=12))
        elapsed = time.perf_counter() - started
        return WeekRun(
            pool,
            await pool.store.activities(),
            list(await pool.store.all_tasks()),
            mid,
            sleeps,
            elapsed,
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(asyncio, "sleep", recording_sleep)
        result: WeekRun = kit.run(scenario)
    return result


def test_week_runs_fast_on_the_virtual_clock_without_waiting(week: WeekRun) -> None:
    assert week.elapsed < 5.0
    assert week.sleeps, "the virtual clock yields to the event loop between due moments"
    assert set(week.sleeps) == {0}
    assert len(week.of(A.SENT)) > 200


def test_delayed_actions_are_pending_tasks_mid_run(week: WeekRun) -> None:
    kinds: set[mw.TaskKind] = set()
    for now, pending in week.mid:
        assert pending
        assert all(t.due_at > now for t in pending)
        kinds |= {t.kind for t in pending}
        # Follow-ups are hours away, never run inline.
        assert max(t.due_at for t in pending) - now > timedelta(hours=1)
    assert {mw.TaskKind.SEND, mw.TaskKind.CHECK, mw.TaskKind.ENGAGE, mw.TaskKind.REPLY} <= kinds


def test_every_task_finished(week: WeekRun) -> None:
    statuses = Counter(t.status for t in week.tasks)
    assert set(statuses) == {mw.TaskStatus.DONE}, statuses
    assert not week.of(A.FAILED)
    assert not week.of(A.BOUNCED)


def test_every_message_sent_has_its_placement_recorded_on_the_sender(week: WeekRun) -> None:
    outgoing = [(a.account_id, a.message_id, a.peer_id) for a in week.of(A.SENT)]
    outgoing += [(a.account_id, a.message_id, a.peer_id) for a in week.of(A.REPLIED)]
    delivered = Counter((a.account_id, a.message_id, a.peer_id) for a in week.of(A.DELIVERED))
    assert len(delivered) == len(outgoing) == sum(delivered.values())
    assert set(delivered) == set(outgoing)
    for a in week.of(A.DELIVERED):
        expected = mw.Placement.SPAM if a.peer_id == SPAMMY else mw.Placement.INBOX
        assert a.placement is expected


def test_spam_is_rescued_into_the_inbox(week: WeekRun) -> None:
    to_spammy = {a.message_id for a in week.of(A.DELIVERED) if a.peer_id == SPAMMY}
    rescued = {a.message_id for a in week.of(A.RESCUED_FROM_SPAM)}
    assert len(to_spammy) > 10
    assert rescued == to_spammy
    assert all(a.account_id == SPAMMY for a in week.of(A.RESCUED_FROM_SPAM))
    address = week.pool.by_id(SPAMMY).address
    assert week.network.messages(address, "Junk") == []
    inbox = {m.message_id for m in week.network.messages(address, "INBOX")}
    assert to_spammy <= inbox
    # The rescue comes before any other action on the message.
    first_action = {}
    for a in week.activities:
        if a.account_id == SPAMMY and a.message_id in to_spammy:
            first_action.setdefault(a.message_id, a.action)
    assert set(first_action.values()) == {A.RESCUED_FROM_SPAM}


def test_engagement_acts_on_the_received_copy_after_any_move(week: WeekRun) -> None:
    flags = {A.OPENED: "\\Seen", A.MARKED_IMPORTANT: "$Important", A.STARRED: "\\Flagged"}
    done: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for a in week.activities:
        if a.action in flags:
            done[flags[a.action]].add((a.account_id, a.message_id or ""))
    received = [
        (a.peer_id or "", a.message_id or "") for a in week.of(A.DELIVERED)
    ]  # (recipient, message)
    rescued_opened = 0
    for account_id, message_id in received:
        copy = week.copy_in(account_id, message_id)
        assert copy.folder == "INBOX"
        for flag, keys in done.items():
            assert (flag in copy.flags) is ((account_id, message_id) in keys), (flag, copy)
        if account_id == SPAMMY and "\\Seen" in copy.flags:
            rescued_opened += 1
    assert rescued_opened > 5


def test_engagement_rates_match_the_settings(week: WeekRun) -> None:
    located = len(week.of(A.DELIVERED))
    opened = {(a.account_id, a.message_id) for a in week.of(A.OPENED)}
    assert len(opened) == len(week.of(A.OPENED))  # one open per received message
    assert len(opened) / located == pytest.approx(ENGAGEMENT.open_rate, abs=0.08)
    important = len(week.of(A.MARKED_IMPORTANT)) / len(opened)
    assert important == pytest.approx(ENGAGEMENT.important_rate, abs=0.08)
    starred = len(week.of(A.STARRED)) / len(opened)
    assert starred == pytest.approx(ENGAGEMENT.star_rate, abs=0.06)
    # Replies: turns 0 and 1 may be answered (max_turns=3), each with reply_rate.
    parents = {
        week.copy_in(a.peer_id or "", a.message_id or "").in_reply_to for a in week.of(A.REPLIED)
    }
    answerable = [
        (account, mid)
        for account, mid in opened
        if week.copy_in(account, mid or "").references.__len__() < 2
    ]
    answered = sum(1 for _, mid in answerable if mid in parents)
    assert len(answerable) > 150
    assert answered / len(answerable) == pytest.approx(ENGAGEMENT.reply_rate, abs=0.08)


def test_replies_thread_with_in_reply_to_and_references(week: WeekRun) -> None:
    replies = week.of(A.REPLIED)
    assert len(replies) > 50
    second_turns = 0
    for a in replies:
        copy = week.copy_in(a.peer_id or "", a.message_id or "")
        assert copy.in_reply_to
        assert copy.references[-1] == copy.in_reply_to
        assert copy.subject.startswith("Re: ")
        assert not copy.subject.startswith("Re: Re:")
        root = copy.references[0]
        # The thread's root is the opening, sent by one of the two and received by the other.
        opening = next(s for s in week.of(A.SENT) if s.message_id == root)
        assert {opening.account_id, opening.peer_id} == {a.account_id, a.peer_id}
        # In the receiving mailbox the reply joins the thread of the message it answers.
        parent_copies = [
            m
            for m in week.network.messages(week.pool.by_id(a.peer_id).address)
            if m.message_id == copy.in_reply_to
        ]
        assert parent_copies
        assert all(m.thread_id == copy.thread_id for m in parent_copies)
        assert copy.thread_id == next(
            m.thread_id
            for m in week.network.messages(week.pool.by_id(a.peer_id).address)
            if m.message_id == root
        )
        assert copy.subject == f"Re: {week.copy_in(opening.peer_id or '', root).subject}"
        # The replier's Sent copy is in the same thread as what it answered in its mailbox.
        assert week.sent_copy(a.account_id, a.message_id or "").thread_id == (
            week.copy_in(a.account_id, copy.in_reply_to).thread_id
        )
        if len(copy.references) > 1:
            second_turns += 1
    assert second_turns > 5


def test_sends_stay_inside_windows_and_daily_caps(week: WeekRun, kit: Any) -> None:
    per_day: Counter[tuple[str, Any]] = Counter()
    for a in week.of(A.SENT):
        account = week.pool.by_id(a.account_id)
        local = a.at.astimezone(account.zone)
        assert account.window.start <= local.time() < account.window.end
        assert local.weekday() < 5
        per_day[(a.account_id, local.date())] += 1
    for (account_id, _), count in per_day.items():
        assert count <= week.pool.by_id(account_id).daily_cap
    assert max(c for (k, _), c in per_day.items() if k == "a03") == 4
    assert max(per_day.values()) == 6


def test_partners_are_spread(week: WeekRun) -> None:
    partners: dict[str, set[str]] = defaultdict(set)
    for a in week.of(A.SENT):
        partners[a.account_id].add(a.peer_id or "")
        assert a.peer_id != a.account_id
    assert all(len(p) >= 8 for p in partners.values()), partners


async def test_health_reflects_the_measured_placement(week: WeekRun) -> None:
    since = week.pool.clock.now() - timedelta(days=7)
    for account_id in ("a00", "a01", SPAMMY):
        mine = [a for a in week.activities if a.account_id == account_id and a.at >= since]
        spam = sum(1 for a in mine if a.action is A.DELIVERED and a.peer_id == SPAMMY)
        located = sum(1 for a in mine if a.action is A.DELIVERED)
        report = await week.pool.engine.health(account_id)
        assert report.inputs["spam"] == spam
        assert report.inputs["located"] == located
        assert report.inputs["sent"] == sum(1 for a in mine if a.action is A.SENT)
        watch = located >= 20 and spam / located >= 0.10
        assert report.state is (mw.HealthState.WATCH if watch else mw.HealthState.HEALTHY)
    assert (await week.pool.engine.health(SPAMMY)).inputs["spam"] == 0
    with pytest.raises(mw.ConfigurationError):
        await week.pool.engine.health("nobody")


# -- determinism -----------------------------------------------------------------------------


async def run_signature(kit: Any, seed: int) -> list[tuple[str, str, datetime, str | None]]:
    accounts = kit.make_accounts(8, strategy=kit.constant(5))
    pool = kit.make_pool(accounts, seed=seed)
    await pool.run_days(3)
    return [(a.account_id, a.action.value, a.at, a.message_id) for a in await pool.activities()]


async def test_same_seed_same_activity_sequence(kit: Any) -> None:
    first = await run_signature(kit, seed=5)
    second = await run_signature(kit, seed=5)
    assert len(first) > 100
    assert first == second
    assert await run_signature(kit, seed=6) != first


SCRIPT = """
import asyncio, hashlib
from datetime import UTC, datetime, timedelta
import mailwarm as mw
from mailwarm.providers.memory import MemoryNetwork

async def main():
    clock = mw.VirtualClock(datetime(2026, 11, 2, tzinfo=UTC))
    zones = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
    ramp = {"kind": "linear", "start": 4, "step": 1, "cap": 9}
    accounts = [
        mw.EmailAccount(id=f"a{i}", address=f"user{i}@org{i}.com", strategy=ramp,
                        provider=("gmail", "graph")[i % 2], timezone=zones[i % 3])
        for i in range(10)
    ]
    network = MemoryNetwork(clock)
    network.add_accounts(accounts)
    engine = mw.WarmupEngine(accounts, network.provider, clock=clock, seed=3)
    await engine.run_until(clock.now() + timedelta(days=3))
    rows = [(a.account_id, a.action.value, a.at.isoformat(), a.message_id, a.peer_id)
            for a in await engine.store.activities()]
    print(len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())

asyncio.run(main())
"""


def test_same_seed_same_run_across_processes() -> None:
    """No hidden dependence on hash randomisation or the wall clock."""
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(done.stdout.strip())
    assert len(outputs) == 1
    (line,) = outputs
    assert int(line.split()[0]) > 100
