"""Analytics on SQLite and PostgreSQL: exact figures, health, pages, and retention."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select

import mailwarm as mw
from mailwarm._errors import AuthExpired, ConfigurationError, PermanentProviderError
from mailwarm.engine import HealthPolicy, HealthStats, MemoryStore, assess, collect_stats
from mailwarm.providers.memory import MemoryNetwork
from mailwarm.storage._analytics import (
    Analytics,
    InvalidCursor,
    Stats,
    encode_cursor,
)
from mailwarm.storage._database import create_engine
from mailwarm.storage._migrate import upgrade
from mailwarm.storage._schema import activities, activity_rollups
from mailwarm.storage._store import SqlStore

A = mw.ActivityAction
P = mw.Placement
D1, D2, D3 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)


def at(day: date, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=UTC)


def account(id_: str, provider: str, pool: str) -> mw.EmailAccount:
    return mw.EmailAccount(id=id_, address=f"{id_}@{id_}.example", provider=provider, pool=pool)


# a1 (gmail), a2 (graph), a3 (smtp) in pool p1; b1 (gmail) in pool p2; o1, o2 in another tenant.
ACCOUNTS = [
    account("a1", "gmail", "p1"),
    account("a2", "graph", "p1"),
    account("a3", "smtp", "p1"),
    account("b1", "gmail", "p2"),
]
OTHER_TENANT = [account("o1", "gmail", "p1"), account("o2", "graph", "p1")]


def act(
    n: int,
    who: str,
    action: mw.ActivityAction,
    when: datetime,
    peer: str | None = None,
    placement: mw.Placement | None = None,
) -> mw.Activity:
    return mw.Activity(
        id=f"x{n:02d}", account_id=who, action=action, at=when, peer_id=peer, placement=placement
    )


# What the engine records (engine/_actions.py): sent, delivered (with the placement), bounced
# and auth_failed on the sender; rescued, opened and replied on the recipient, naming the sender.
HAND_MADE = [
    act(1, "a1", A.SENT, at(D1, 9), "a2"),
    act(2, "a1", A.DELIVERED, at(D1, 9, 10), "a2", P.INBOX),
    act(3, "a2", A.OPENED, at(D1, 9, 20), "a1"),
    act(4, "a2", A.REPLIED, at(D1, 9, 30), "a1"),
    act(5, "a2", A.DELIVERED, at(D1, 9, 40), "a1", P.INBOX),  # a2's reply, in a1's inbox
    act(6, "a1", A.SENT, at(D1, 10), "a3"),
    act(7, "a1", A.DELIVERED, at(D1, 10, 10), "a3", P.SPAM),
    act(8, "a3", A.RESCUED_FROM_SPAM, at(D1, 10, 20), "a1"),
    act(9, "a2", A.SENT, at(D1, 23, 59, 59, 999_999), "a1"),  # the last instant of D1
    act(10, "a2", A.DELIVERED, at(D2, 0), "a1", P.PROMOTIONS),  # the first instant of D2
    act(11, "a1", A.SENT, at(D2, 8), "a2"),
    act(12, "a1", A.BOUNCED, at(D2, 8, 5), "a3"),
    act(13, "a1", A.DELIVERED, at(D2, 8, 30), "a2", P.MISSING),
    act(14, "a3", A.SENT, at(D2, 12), "a1"),
    act(15, "a3", A.DELIVERED, at(D2, 12, 10), "a1", P.SPAM),
    act(16, "a1", A.AUTH_FAILED, at(D2, 13)),
    act(17, "a1", A.PAUSED, at(D2, 13)),
    act(18, "b1", A.SENT, at(D3, 7), "ghost"),  # a peer no database row knows
    act(19, "b1", A.DELIVERED, at(D3, 7, 10), "ghost", P.INBOX),
    act(20, "a1", A.SENT, at(D3, 8), "b1"),
    act(21, "a1", A.DELIVERED, at(D3, 8, 10), "b1", P.INBOX),
    act(22, "b1", A.REPLIED, at(D3, 9), "a1"),
    act(23, "a1", A.SENT, at(D1, 11), "a2"),  # same rollup row as x01
    act(24, "o1", A.SENT, at(D1, 9), "o2"),
    act(25, "o1", A.DELIVERED, at(D1, 9, 10), "o2", P.INBOX),
]


def rows(items: Iterable[mw.Activity]) -> list[dict[str, Any]]:
    result = []
    for a in items:
        row = a.model_dump()
        row["action"] = a.action.value
        row["placement"] = a.placement.value if a.placement else None
        result.append(row)
    return result


async def load(url: str, items: list[mw.Activity], accounts: list[mw.EmailAccount]) -> None:
    store = SqlStore(url)
    other = SqlStore(store.engine, tenant_id="other")
    try:
        await store.attach(accounts)
        await other.attach(OTHER_TENANT)
        async with store.engine.begin() as conn:
            await conn.execute(insert(activities), rows(items))
    finally:
        await store.aclose()


@contextlib.asynccontextmanager
async def far_from_utc(url: str) -> AsyncIterator[Analytics]:
    """Analytics whose PostgreSQL sessions run at UTC+14: days must still be UTC days."""
    settings = {} if url.startswith("sqlite") else {"server_settings": {"timezone": "Etc/GMT-14"}}
    engine = create_engine(url, connect_args=settings)
    try:
        yield Analytics(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def hand_made(migrated_url: str) -> AsyncIterator[Analytics]:
    await load(migrated_url, HAND_MADE, ACCOUNTS)
    async with far_from_utc(migrated_url) as analytics:
        yield analytics


def counts(stats: Stats) -> dict[str, int]:
    values = dataclasses.asdict(stats)
    values.pop("day", None)
    values.pop("provider", None)
    return {k: v for k, v in values.items() if v}


async def test_daily_figures_of_an_account(hand_made: Analytics) -> None:
    days = await hand_made.daily(D1, D3 + timedelta(days=1), account_id="a1")
    assert [d.day for d in days] == [D1, D2, D3, D3 + timedelta(days=1)]
    assert [counts(d) for d in days] == [
        # sent x01 x06 x23; located x02 inbox, x07 spam; received x05; rescued x08; reply x04
        {"sent": 3, "located": 2, "inbox": 1, "spam": 1, "received": 1, "rescued": 1, "replies": 1},
        # x11; x13 missing; x10 promotions (inbox) and x15 spam received; x12; x16
        {"sent": 1, "located": 1, "missing": 1, "received": 2, "bounces": 1, "auth_failures": 1},
        {"sent": 1, "located": 1, "inbox": 1, "replies": 1},  # x20, x21, x22
        {},
    ]
    assert (days[0].inbox_rate, days[0].spam_rate, days[0].bounce_rate) == (0.5, 0.5, 0.0)
    assert (days[1].inbox_rate, days[1].spam_rate, days[1].bounce_rate) == (0.0, 0.0, 0.5)
    assert days[3].inbox_rate is None
    assert days[3].spam_rate is None
    assert days[3].bounce_rate is None

    total = await hand_made.totals(D1, D3, account_id="a1")
    assert counts(total) == {
        "sent": 5,
        "located": 4,
        "inbox": 2,
        "spam": 1,
        "missing": 1,
        "received": 3,
        "rescued": 1,
        "replies": 2,
        "bounces": 1,
        "auth_failures": 1,
    }
    assert (total.inbox_rate, total.spam_rate) == (0.5, 0.25)
    assert total.bounce_rate == pytest.approx(1 / 6)


async def test_figures_per_partner_provider(hand_made: Analytics) -> None:
    split = {p.provider: counts(p) for p in await hand_made.by_provider(D1, D3, account_id="a1")}
    assert list(split) == ["gmail", "graph", "smtp", None]
    assert split == {
        "gmail": {"sent": 1, "located": 1, "inbox": 1, "replies": 1},  # b1: x20 x21 x22
        # a2: x01 x11 x23; x02 inbox, x13 missing; x05 x10 received from a2; x04
        "graph": {"sent": 3, "located": 2, "inbox": 1, "missing": 1, "received": 2, "replies": 1},
        # a3: x06; x07 spam, rescued (x08) by a3; x12 bounced at a3; x15 received from a3
        "smtp": {"sent": 1, "located": 1, "spam": 1, "rescued": 1, "bounces": 1, "received": 1},
        None: {"auth_failures": 1},  # x16 has no partner
    }
    pool = {p.provider: counts(p) for p in await hand_made.by_provider(D3, D3, pool="p2")}
    # b1's mail to a mailbox no row knows; a1's message received by b1 (partner a1: gmail).
    assert pool == {"gmail": {"received": 1}, None: {"sent": 1, "located": 1, "inbox": 1}}


async def test_figures_per_pool_and_tenant(hand_made: Analytics) -> None:
    p1 = [counts(d) for d in await hand_made.daily(D1, D3, pool="p1")]
    assert p1 == [
        # sent x01 x06 x09 x23; located x02 x05 inbox, x07 spam; received x02 (a2), x05 (a1),
        # x07 (a3); rescued x08; reply x04
        {"sent": 4, "located": 3, "inbox": 2, "spam": 1, "received": 3, "rescued": 1, "replies": 1},
        # x11 x14; x10 promotions, x13 missing, x15 spam; received x10 x15 (x13 is missing)
        {
            "sent": 2,
            "located": 3,
            "inbox": 1,
            "spam": 1,
            "missing": 1,
            "received": 2,
            "bounces": 1,
            "auth_failures": 1,
        },
        {"sent": 1, "located": 1, "inbox": 1, "replies": 1},  # x20 x21 by a1; x22 b1's reply
    ]
    p2 = [counts(d) for d in await hand_made.daily(D1, D3, pool="p2")]
    assert p2 == [{}, {}, {"sent": 1, "located": 1, "inbox": 1, "received": 1}]
    tenant = counts(await hand_made.totals(D1, D3))
    assert tenant["sent"] == 8
    assert tenant["received"] == 6
    assert tenant["located"] == 8
    assert counts(await hand_made.totals(D1, D3, pool="nobody")) == {}
    other = Analytics(hand_made.engine, tenant_id="other")
    assert counts(await other.totals(D1, D1)) == {
        "sent": 1,
        "located": 1,
        "inbox": 1,
        "received": 1,
    }
    with pytest.raises(ConfigurationError, match="unknown account id 'o1'"):
        await hand_made.daily(D1, D1, account_id="o1")
    with pytest.raises(ConfigurationError, match="not both"):
        await hand_made.daily(D1, D1, account_id="a1", pool="p1")
    with pytest.raises(ConfigurationError, match="before start"):
        await hand_made.daily(D2, D1)


async def test_summary_health_is_the_engines_assessment(hand_made: Analytics) -> None:
    summary = await hand_made.summary("a1", days=2, today=D3)
    assert (summary.start, summary.end, summary.status) == (D2, D3, "active")
    assert counts(summary.totals)["sent"] == 2
    window_start = at(D3 - timedelta(days=6), 0)
    stats = collect_stats(HAND_MADE, window_start)
    assert summary.totals.health_stats() != stats["a1"]  # two days, not the health window
    assert summary.health == assess("a1", stats["a1"])
    assert summary.health.inputs["auth_failures"] == 1
    assert summary.health.state is mw.HealthState.PAUSED
    reports = await hand_made.health(pool="p1", today=D3)
    assert [r.account_id for r in reports] == ["a1", "a2", "a3"]
    assert reports == [assess(i, stats[i]) for i in ("a1", "a2", "a3")]
    # The window is the policy's: from D3 alone, x16's authentication failure is gone.
    short = Analytics(hand_made.engine, policy=HealthPolicy(window_days=1))
    (report,) = await short.health(account_id="a1", today=D3)
    assert report == assess("a1", collect_stats(HAND_MADE, at(D3, 0))["a1"], short.policy)
    assert report.state is mw.HealthState.HEALTHY
    assert report.score == 100
    with pytest.raises(ConfigurationError, match="unknown account"):
        await hand_made.summary("nobody")


# -- figures from a real engine run ----------------------------------------------------------

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
ENGINE_ACCOUNTS = [
    mw.EmailAccount(
        id=f"e{i}",
        address=f"user{i}@company{i}.example",
        daily_cap=8,
        provider=("gmail", "graph", "smtp")[i % 3],
        pool=f"q{i % 2}",
        timezone=("Europe/Berlin", "America/New_York")[i % 2],
    )
    for i in range(6)
]


async def engine_run() -> list[mw.Activity]:
    """Four days of a pool with 30 % spam placement, three bounces and an expired login."""
    clock = mw.VirtualClock(START)
    rng = random.Random(5)
    network = MemoryNetwork(clock, placement=lambda _: P.SPAM if rng.random() < 0.3 else P.INBOX)
    network.add_accounts(ENGINE_ACCOUNTS)
    bounce = PermanentProviderError("550 no such user")
    network.fail_next(ENGINE_ACCOUNTS[1].address, "send", bounce, times=3)
    network.fail_next(ENGINE_ACCOUNTS[4].address, "locate", AuthExpired("token revoked"))
    store = MemoryStore()
    async with mw.WarmupEngine(
        ENGINE_ACCOUNTS, network.provider, clock=clock, seed=3, store=store
    ) as engine:
        await engine.run_until(START + timedelta(days=4))
    return await store.activities()


def reference(
    log: list[mw.Activity], subjects: set[str], key: Callable[[mw.Activity, str | None], Any]
) -> dict[Any, dict[str, int]]:
    """The documented definitions, in plain Python over the activity log."""
    providers = {a.id: a.provider for a in ENGINE_ACCOUNTS}
    result: dict[Any, Counter[str]] = {}
    for a in log:
        if a.account_id in subjects:
            c = result.setdefault(key(a, providers.get(a.peer_id or "")), Counter())
            if a.action is A.SENT:
                c["sent"] += 1
            elif a.action is A.DELIVERED and a.placement is not None:
                c["located"] += 1
                kind = {P.SPAM: "spam", P.MISSING: "missing"}.get(a.placement, "inbox")
                c[kind] += 1
            elif a.action is A.BOUNCED:
                c["bounces"] += 1
            elif a.action is A.AUTH_FAILED:
                c["auth_failures"] += 1
        if a.peer_id in subjects:
            c = result.setdefault(key(a, providers.get(a.account_id)), Counter())
            if a.action is A.DELIVERED and a.placement not in (None, P.MISSING):
                c["received"] += 1
            elif a.action is A.REPLIED:
                c["replies"] += 1
            elif a.action is A.RESCUED_FROM_SPAM:
                c["rescued"] += 1
    return {k: {n: v for n, v in c.items() if v} for k, c in result.items() if +c}


async def snapshot(analytics: Analytics, first: date, last: date) -> dict[str, Any]:
    """Every figure of every account and pool, for comparisons."""
    found: dict[str, Any] = {}
    for a in ENGINE_ACCOUNTS:
        found[f"daily {a.id}"] = await analytics.daily(first, last, account_id=a.id)
        found[f"providers {a.id}"] = await analytics.by_provider(first, last, account_id=a.id)
        found[f"summary {a.id}"] = await analytics.summary(a.id, days=3, today=last)
    for pool in ("q0", "q1", None):
        found[f"daily {pool}"] = await analytics.daily(first, last, pool=pool)
        found[f"providers {pool}"] = await analytics.by_provider(first, last, pool=pool)
        found[f"health {pool}"] = await analytics.health(pool=pool, today=last)
        found[f"totals {pool}"] = await analytics.totals(first, last, pool=pool)
    return found


async def test_figures_of_an_engine_run_follow_the_definitions(migrated_url: str) -> None:
    log = await engine_run()
    actions = Counter(a.action for a in log)
    assert actions[A.RESCUED_FROM_SPAM] > 5
    assert actions[A.REPLIED] > 5
    assert actions[A.BOUNCED] == 3
    assert actions[A.AUTH_FAILED] == 1
    await load(migrated_url, log, ENGINE_ACCOUNTS)
    first, last = START.date(), START.date() + timedelta(days=4)
    async with Analytics(migrated_url) as analytics:
        for pool in ("q0", "q1"):
            members = {a.id for a in ENGINE_ACCOUNTS if a.pool == pool}
            by_day = reference(log, members, lambda a, _: a.at.date())
            days = await analytics.daily(first, last, pool=pool)
            assert {d.day: counts(d) for d in days if counts(d)} == by_day
            by_provider = reference(log, members, lambda _, provider: provider)
            split = await analytics.by_provider(first, last, pool=pool)
            assert {p.provider: counts(p) for p in split} == by_provider
        # Health: the engine's own counting and formula, over the policy's UTC days.
        since = datetime.combine(last - timedelta(days=6), datetime.min.time(), tzinfo=UTC)
        stats = collect_stats(log, since)
        reports = await analytics.health(today=last)
        assert reports == [assess(a.id, stats.get(a.id, HealthStats())) for a in ENGINE_ACCOUNTS]
        assert {r.state for r in reports} >= {mw.HealthState.PAUSED}  # e4's expired login


# -- retention -------------------------------------------------------------------------------


async def raw_count(analytics: Analytics) -> int:
    async with analytics.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(activities)) or 0)


async def test_retention_changes_no_figure(migrated_url: str) -> None:
    log = await engine_run()
    await load(migrated_url, [*log, *HAND_MADE], [*ENGINE_ACCOUNTS, *ACCOUNTS])
    first, last = START.date(), START.date() + timedelta(days=4)
    async with far_from_utc(migrated_url) as analytics:
        before = await snapshot(analytics, first, last)
        hand_before = await snapshot_hand_made(analytics)
        total = await raw_count(analytics)
        # Day by day, in small batches (several batches add to one rollup row).
        kept = total
        for cutoff in (first + timedelta(days=1), last):
            report = await analytics.summarise_and_prune(cutoff, batch_size=7)
            assert report.cutoff == datetime.combine(cutoff, datetime.min.time(), tzinfo=UTC)
            assert report.moved > 7
            assert report.batches == -(-report.moved // 7)
            kept -= report.moved
            assert await raw_count(analytics) == kept
            assert await snapshot(analytics, first, last) == before
        # The hand-made days, by age; a second run finds nothing left to move.
        now = at(D3, 12)
        report = await analytics.summarise_and_prune(timedelta(days=1), now=now, batch_size=1)
        left = [a for a in log if a.at >= at(last, 0)]  # what the last cutoff kept
        d1 = [a for a in HAND_MADE if a.at < at(D2, 0) and not a.account_id.startswith("o")]
        assert (report.cutoff, report.moved) == (at(D2, 0), len(left) + len(d1))
        again = await analytics.summarise_and_prune(timedelta(days=1), now=now)
        assert (again.moved, again.batches) == (0, 0)
        assert await snapshot_hand_made(analytics) == hand_before
        other = Analytics(analytics.engine, tenant_id="other")
        assert (await other.summarise_and_prune(D2)).moved == 2  # x24 x25
        assert await snapshot_hand_made(analytics) == hand_before
        assert await snapshot(analytics, first, last) == before
        async with analytics.engine.connect() as conn:
            rolled = dict(
                (
                    await conn.execute(
                        select(activity_rollups.c.action, func.sum(activity_rollups.c.count))
                        .where(activity_rollups.c.account_id == "a1")
                        .where(activity_rollups.c.day == D1)
                        .group_by(activity_rollups.c.action)
                    )
                ).all()
            )
            one_row = await conn.scalar(
                select(activity_rollups.c.count).where(
                    activity_rollups.c.account_id == "a1",
                    activity_rollups.c.day == D1,
                    activity_rollups.c.action == "sent",
                    activity_rollups.c.peer_provider == "graph",
                )
            )
        # a1's own rows, and the in: rows of what partners did with its messages (x03, an
        # opening, and x09, a2's send to a1, are rolled up as a2's own rows only).
        assert rolled == {
            "sent": 3,
            "delivered": 2,
            "in:delivered": 1,
            "in:replied": 1,
            "in:rescued_from_spam": 1,
        }
        assert one_row == 2  # x01 and x23, moved in separate batches
        page = await analytics.activity_page(account_id="a1", limit=1000)
        assert {a.at.date() for a in page.items} == {D2, D3}  # pages list raw rows only


async def snapshot_hand_made(analytics: Analytics) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for a in ACCOUNTS:
        found[f"daily {a.id}"] = await analytics.daily(D1, D3, account_id=a.id)
        found[f"providers {a.id}"] = await analytics.by_provider(D1, D3, account_id=a.id)
        found[f"summary {a.id}"] = await analytics.summary(a.id, today=D3)
    other = Analytics(analytics.engine, tenant_id="other")
    found["other"] = await other.daily(D1, D3)
    return found


async def test_retention_validates_its_input(hand_made: Analytics) -> None:
    with pytest.raises(ConfigurationError, match="not a datetime"):
        await hand_made.summarise_and_prune(at(D2, 0))
    with pytest.raises(ConfigurationError, match="batch_size"):
        await hand_made.summarise_and_prune(D1, batch_size=0)
    report = await hand_made.summarise_and_prune(D1)
    assert (report.moved, report.batches) == (0, 0)


# -- activity pages --------------------------------------------------------------------------


def newest_first(items: Iterable[mw.Activity]) -> list[str]:
    return [a.id for a in sorted(items, key=lambda a: (a.at, a.id), reverse=True)]


async def walk(analytics: Analytics, limit: int, **filters: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    after = None
    while True:
        page = await analytics.activity_page(limit=limit, after=after, **filters)
        pages.append([a.id for a in page.items])
        if page.next_cursor is None:
            return pages
        after = page.next_cursor
        assert len(pages) < 100


async def test_pages_walk_every_activity_once_in_order(migrated_url: str) -> None:
    # Ties: five activities at one instant, across page boundaries.
    tied = [act(30 + i, "a2", A.OPENED, at(D2, 13), "a3") for i in range(5)]
    items = [*HAND_MADE, *tied]
    await load(migrated_url, items, ACCOUNTS)
    mine = [a for a in items if a.account_id in {"a1", "a2", "a3", "b1"}]
    async with Analytics(migrated_url) as analytics:
        for limit in (1, 2, 3, 28, 29, 50):
            pages = await walk(analytics, limit)
            assert [i for p in pages for i in p] == newest_first(mine)
            assert all(len(p) == limit for p in pages[:-1])
            assert 0 < len(pages[-1]) <= limit
        filters: list[tuple[dict[str, Any], Callable[[mw.Activity], bool]]] = [
            ({"account_id": "a1"}, lambda a: a.account_id == "a1"),
            ({"pool": "p2"}, lambda a: a.account_id == "b1"),
            ({"actions": [A.SENT, "delivered"]}, lambda a: a.action in (A.SENT, A.DELIVERED)),
            (
                {"account_id": "a2", "actions": ["opened"], "since": at(D1, 9, 20)},
                lambda a: a.account_id == "a2" and a.action is A.OPENED,
            ),
            (
                {"since": at(D2, 0), "until": at(D3, 7)},
                lambda a: at(D2, 0) <= a.at < at(D3, 7),
            ),
        ]
        for given, keep in filters:
            expected = newest_first(a for a in mine if keep(a))
            assert expected
            pages = await walk(analytics, 2, **given)
            assert [i for p in pages for i in p] == expected, given
        page = await analytics.activity_page(account_id="a1", limit=2)
        assert [a.id for a in page.items] == ["x21", "x20"]
        first = page.items[0]
        assert first == next(a for a in items if a.id == first.id)  # every field round-trips
        # A cursor stays valid while newer rows arrive.
        async with analytics.engine.begin() as conn:
            await conn.execute(insert(activities), rows([act(90, "a1", A.SENT, at(D3, 23))]))
        rest = await analytics.activity_page(account_id="a1", limit=1000, after=page.next_cursor)
        assert [a.id for a in rest.items] == newest_first(a for a in mine if a.account_id == "a1")[
            2:
        ]
        assert rest.next_cursor is None
        empty = await analytics.activity_page(account_id="a3", actions=[A.BOUNCED])
        assert (empty.items, empty.next_cursor) == ([], None)


BAD_CURSORS = [
    "garbage!",
    "",
    base64.urlsafe_b64encode(b"a1|yesterday|x01").decode(),
    base64.urlsafe_b64encode(b"a1|2026-03-02T09:00:00|x01").decode(),  # a naive time
    base64.urlsafe_b64encode(b"v9|2026-03-02T09:00:00+00:00|x01").decode(),
    base64.urlsafe_b64encode(b"a1|2026-03-02T09:00:00+00:00|").decode(),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
]


async def test_a_cursor_that_was_not_handed_out_is_refused(sqlite_url: str) -> None:
    await upgrade(sqlite_url)
    await load(sqlite_url, HAND_MADE[:3], ACCOUNTS)
    async with Analytics(sqlite_url) as analytics:
        for cursor in BAD_CURSORS:
            with pytest.raises(InvalidCursor, match="not a cursor of activity_page"):
                await analytics.activity_page(after=cursor)
        good = encode_cursor(at(D1, 9, 20), "x03")
        page = await analytics.activity_page(after=good)
        assert [a.id for a in page.items] == ["x02", "x01"]
        with pytest.raises(ConfigurationError, match="limit"):
            await analytics.activity_page(limit=0)
        with pytest.raises(ConfigurationError, match="timezone-aware"):
            await analytics.activity_page(since=datetime(2026, 3, 2))
        with pytest.raises(ConfigurationError, match="unknown action 'nope'"):
            await analytics.activity_page(actions=["nope"])
