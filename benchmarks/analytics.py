"""Analytics on 10 million activities in PostgreSQL: query times with and without indexes.

The benchmark creates its own database (``mailwarm_bench_<random>``, dropped at the end, also
on Ctrl-C) on the server of ``--database`` (a URL of a database it may use to create and drop
others), applies the schema with ``mailwarm.storage._migrate.upgrade``, and generates
``--rows`` activities in SQL (``generate_series``, two loaders at once, progress shown): 2,000
accounts (32-character ids, like the default uuid4 hex) in 20 pools, five providers, 180 days
of exchanges in the engine's mix (sent and delivered on the sender; opened, rescued, replied on
the recipient; bounces, deferrals, authentication failures).

It then times the real ``Analytics`` methods in three index sets, in the same run, on the same
data: ``unindexed`` (the primary key only: the baseline), ``schema`` (the indexes of
``mailwarm/storage/_schema.py`` today) and ``indexed`` (the schema's with the two covering
indexes this benchmark argues for, ``PROPOSED``). Each time is the median of ``--runs`` runs
after a warm-up (``--baseline-runs`` for the two baselines). It checks that every index set
gives the same results and prints: query, the three times, the ratio unindexed / indexed, and
whether the indexed time is under 100 ms. ``--retention DAYS`` (default 150; 0 to skip) then
summarises the activities older than DAYS into rollups, prints how long that took, and checks
that no figure changed.

    python benchmarks/analytics.py [--database postgresql://postgres@127.0.0.1:5432/postgres]
        [--rows 10000000] [--runs 7] [--baseline-runs 3] [--retention 150]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from _postgres import account_id, admin_connect, load_in_parallel, log, plain
from sqlalchemy.engine import make_url

import mailwarm as mw
from mailwarm.storage._analytics import Analytics
from mailwarm.storage._database import create_engine
from mailwarm.storage._migrate import upgrade
from mailwarm.storage._store import SqlStore

ACCOUNTS = 2_000
POOLS = 20
DAYS = 180
END = date(2026, 6, 30)  # the last day of data: "today" for the queries
START = datetime.combine(END - timedelta(days=DAYS - 1), datetime.min.time(), tzinfo=UTC)
PROVIDERS = ("gmail", "gmail", "gmail", "gmail", "graph", "graph", "graph", "smtp", "smtp", "yahoo")
CHUNK = 500_000
POOL = "pool07"

# The schema's activities (account_id, action, at) index, widened so that the figures' own
# branch is an index-only scan, and its mirror for the figures that count for the peer.
PROPOSED = {
    "ix_activities_account_id_action_at_placement_peer_id": (
        "CREATE INDEX IF NOT EXISTS ix_activities_account_id_action_at_placement_peer_id "
        "ON activities (account_id, action, at, placement, peer_id)"
    ),
    "ix_activities_peer_id_action_at_placement_account_id": (
        "CREATE INDEX IF NOT EXISTS ix_activities_peer_id_action_at_placement_account_id "
        "ON activities (peer_id, action, at, placement, account_id)"
    ),
}
REPLACED = "ix_activities_account_id_action_at"

# One exchange is four rows: k = 4 e + slot. Sender s sends to r, a member of its pool.
GENERATE = """
INSERT INTO activities (id, account_id, action, at, message_id, peer_id, placement, task_id)
SELECT md5(k::text),
       CASE WHEN on_sender THEN sender ELSE recipient END,
       action,
       $3::timestamptz + make_interval(secs => e * $4::float8) + slot * interval '20 minutes',
       CASE WHEN action = 'auth_failed' THEN NULL ELSE '<' || md5(e::text) || '@mw.example>' END,
       CASE WHEN action = 'auth_failed' THEN NULL
            WHEN on_sender THEN recipient ELSE sender END,
       CASE WHEN slot <> 1 THEN NULL WHEN p < 78 THEN 'inbox' WHEN p < 86 THEN 'promotions'
            WHEN p < 97 THEN 'spam' ELSE 'missing' END,
       md5('task' || k::text)
FROM (
    SELECT k, e, slot, p, q,
           md5('account' || s::text) AS sender,
           md5('account' || ((s % 20) + 20 * ((s / 20 + 1 + (h / 7) % 99) % 100))::text)
               AS recipient,
           slot IN (0, 1) OR (slot = 3 AND q BETWEEN 350 AND 389) AS on_sender,
           CASE slot
               WHEN 0 THEN 'sent'
               WHEN 1 THEN 'delivered'
               WHEN 2 THEN CASE WHEN p BETWEEN 86 AND 96 THEN 'rescued_from_spam'
                                ELSE 'opened' END
               ELSE CASE WHEN q < 350 THEN 'replied' WHEN q < 370 THEN 'bounced'
                         WHEN q < 385 THEN 'deferred' WHEN q < 390 THEN 'auth_failed'
                         WHEN q % 2 = 0 THEN 'marked_important' ELSE 'starred' END
           END AS action
    FROM (
        SELECT k, k / 4 AS e, (k % 4)::int AS slot, ((k / 4) % 2000)::int AS s,
               abs(hashint8(k / 4)) AS h,
               abs(hashint8(k / 4)) % 100 AS p,
               abs(hashint8(k / 4 + 7777777777)) % 1000 AS q
        FROM generate_series($1::bigint, $2::bigint - 1) AS k
    ) g
) x
"""


ACCOUNT = account_id(42)


async def load(url: str, rows: int) -> list[tuple[str, str]]:
    """Accounts through the store, activities in SQL; returns the schema's activities
    indexes (name, definition), dropped for the load and for the unindexed baseline."""
    store = SqlStore(url)
    await store.attach(
        [
            mw.EmailAccount(
                id=account_id(i),
                address=f"user{i}@company{i}.example",
                provider=PROVIDERS[i % len(PROVIDERS)],
                pool=f"pool{i % POOLS:02d}",
            )
            for i in range(ACCOUNTS)
        ]
    )
    await store.aclose()
    conn = await asyncpg.connect(plain(url))
    try:
        indexes = [
            (r["indexname"], r["indexdef"])
            for r in await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE tablename = 'activities' AND indexname <> 'pk_activities' "
                "ORDER BY indexname"
            )
        ]
        await conn.execute(
            "ALTER TABLE activities DROP CONSTRAINT fk_activities_account_id_email_accounts, "
            "DROP CONSTRAINT pk_activities"
        )
        for name, _ in indexes:
            await conn.execute(f"DROP INDEX {name}")
        exchange = DAYS * 86_400 / (rows / 4)
        await load_in_parallel(url, rows, CHUNK, GENERATE, lambda lo, hi: (lo, hi, START, exchange))
        timed = time.perf_counter()
        await conn.execute("ALTER TABLE activities ADD CONSTRAINT pk_activities PRIMARY KEY (id)")
        await conn.execute(
            "ALTER TABLE activities ADD CONSTRAINT fk_activities_account_id_email_accounts "
            "FOREIGN KEY (account_id) REFERENCES email_accounts (id) ON DELETE CASCADE"
        )
        await conn.execute("VACUUM ANALYZE")
        log(f"  primary key, foreign key, VACUUM ANALYZE: {time.perf_counter() - timed:.0f} s")
    finally:
        await conn.close()
    return indexes


async def build(url: str, statements: list[str]) -> None:
    conn = await asyncpg.connect(plain(url))
    try:
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 2")
        started = time.perf_counter()
        for statement in statements:
            await conn.execute(statement)
        log(f"  built {len(statements)} indexes in {time.perf_counter() - started:.0f} s")
        sizes = await conn.fetch(
            "SELECT indexname, pg_relation_size(indexname::regclass) AS size FROM pg_indexes "
            "WHERE tablename = 'activities' ORDER BY indexname"
        )
        table = await conn.fetchval("SELECT pg_relation_size('activities')")
        listed = ", ".join(f"{r['indexname']} {r['size'] / 2**20:,.0f} MB" for r in sizes)
        log(f"  table {table / 2**20:,.0f} MB; indexes: {listed}")
    finally:
        await conn.close()


async def sixth_page_cursor(analytics: Analytics) -> str | None:
    """The cursor after the fifth page of an account's replies (found once, untimed)."""
    after = None
    for _ in range(5):
        page = await analytics.activity_page(account_id=ACCOUNT, actions=["replied"], after=after)
        after = page.next_cursor
    return after


def queries(
    analytics: Analytics, deep: str | None
) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    """The timed calls: what a dashboard asks for, by account and by pool."""
    month = END - timedelta(days=29)
    since = START + timedelta(days=DAYS - 30)
    a = ACCOUNT
    return [
        ("daily(account, 30 days)", lambda: analytics.daily(month, END, account_id=a)),
        ("daily(account, 180 days)", lambda: analytics.daily(START.date(), END, account_id=a)),
        ("by_provider(account, 30 days)", lambda: analytics.by_provider(month, END, account_id=a)),
        ("summary(account)", lambda: analytics.summary(a, days=30, today=END)),
        ("daily(pool, 30 days)", lambda: analytics.daily(month, END, pool=POOL)),
        ("by_provider(pool, 30 days)", lambda: analytics.by_provider(month, END, pool=POOL)),
        ("health(pool)", lambda: analytics.health(pool=POOL, today=END)),
        ("activity_page(account)", lambda: analytics.activity_page(account_id=a)),
        (
            "activity_page(account, replied, page 6)",
            lambda: analytics.activity_page(account_id=a, actions=["replied"], after=deep),
        ),
        (
            "activity_page(pool, bounced, 30 days)",
            lambda: analytics.activity_page(pool=POOL, actions=["bounced"], since=since),
        ),
        ("activity_page(tenant)", lambda: analytics.activity_page()),
        ("daily(tenant, 1 day)", lambda: analytics.daily(END, END)),
    ]  # fmt: skip


async def measure(
    analytics: Analytics, deep: str | None, runs: int
) -> dict[str, tuple[float, Any]]:
    """Median milliseconds (after one warm-up call) and the result of every query."""
    found: dict[str, tuple[float, Any]] = {}
    for name, call in queries(analytics, deep):
        result = await call()
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            result = await call()
            times.append((time.perf_counter() - started) * 1000)
        found[name] = (statistics.median(times), result)
    return found


async def run(args: argparse.Namespace) -> None:
    name = f"mailwarm_bench_{uuid.uuid4().hex[:10]}"
    admin = await admin_connect(args.database)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await admin.close()
    url = (
        make_url(args.database)
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )
    log(f"database {name} (dropped at the end)")
    engine = create_engine(url)
    began = time.perf_counter()
    try:
        # Revision 0001's indexes are the middle column; 0002 replaces one with the two
        # covering indexes (PROPOSED), the "indexed" column.
        await upgrade(url, "0001")
        schema_indexes = await load(url, args.rows)
        analytics = Analytics(engine)
        deep = await sixth_page_cursor(analytics)
        log(f"timing: unindexed baseline, primary key only (median of {args.baseline_runs})")
        bare = await measure(analytics, deep, args.baseline_runs)
        log("building the schema's indexes")
        await build(url, [definition for _, definition in schema_indexes])
        log(f"timing: the schema's indexes (median of {args.baseline_runs})")
        schema = await measure(analytics, deep, args.baseline_runs)
        log(f"building the proposed indexes (replacing {REPLACED})")
        await build(url, [f"DROP INDEX IF EXISTS {REPLACED}", *PROPOSED.values()])
        log(f"timing: indexed (median of {args.runs})")
        indexed = await measure(analytics, deep, args.runs)
        same = all(indexed[q][1] == schema[q][1] == bare[q][1] for q in indexed)
        print_table(args.rows, indexed, schema, bare)
        log(f"results identical in the three index sets: {'yes' if same else 'NO'}")
        if args.retention:
            await retention(analytics, url, args.retention, args.runs, deep, indexed)
        log(f"total {time.perf_counter() - began:.0f} s")
    finally:
        await engine.dispose()
        admin = await admin_connect(args.database)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        log(f"dropped {name}")


async def retention(
    analytics: Analytics,
    url: str,
    days: int,
    runs: int,
    deep: str | None,
    before: dict[str, tuple[float, Any]],
) -> None:
    """Summarise the activities older than ``days`` and check that no figure changed."""
    now = START + timedelta(days=DAYS)
    started = time.perf_counter()
    report = await analytics.summarise_and_prune(timedelta(days=days), now=now)
    elapsed = time.perf_counter() - started
    conn = await asyncpg.connect(plain(url))
    try:
        rollups = await conn.fetchval("SELECT count(*) FROM activity_rollups")
        await conn.execute("VACUUM ANALYZE activities")
        await conn.execute("VACUUM ANALYZE activity_rollups")
    finally:
        await conn.close()
    log(
        f"retention: {report.moved:,} activities before {report.cutoff:%Y-%m-%d} moved into "
        f"{rollups:,} rollup rows in {report.batches:,} batches of 5,000, {elapsed:.0f} s "
        f"({report.moved / elapsed:,.0f} activities/s)"
    )
    after = await measure(analytics, deep, runs)
    figures = [q for q in before if not q.startswith("activity_page")]
    changed = [q for q in figures if before[q][1] != after[q][1]]
    log(f"figures unchanged after retention: {'yes' if not changed else 'NO: ' + str(changed)}")
    log(f"{'query':<42} {'before ms':>10} {'after ms':>10}")
    for query in figures:
        log(f"{query:<42} {before[query][0]:>10.1f} {after[query][0]:>10.1f}")


def print_table(
    rows: int,
    indexed: dict[str, tuple[float, Any]],
    schema: dict[str, tuple[float, Any]],
    bare: dict[str, tuple[float, Any]],
) -> None:
    log("")
    log(f"{rows:,} activities, {ACCOUNTS:,} accounts in {POOLS} pools, {DAYS} days (PostgreSQL)")
    header = (
        f"{'query':<42} {'indexed ms':>10} {'schema ms':>10} {'unindexed ms':>12} "
        f"{'ratio':>7} {'< 100 ms':>8}"
    )
    log(header)
    log("-" * len(header))
    for query, (ms, _) in indexed.items():
        ratio = bare[query][0] / ms
        log(
            f"{query:<42} {ms:>10.1f} {schema[query][0]:>10.1f} {bare[query][0]:>12.1f} "
            f"{ratio:>6.0f}x {'yes' if ms < 100 else 'NO':>8}"
        )
    log("")
    log("indexed: revision 0002's indexes (the two covering ones); schema: revision 0001's indexes")
    log("only; unindexed: the primary key only; ratio: unindexed / indexed.")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--database",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a database on the server where the benchmark may create and drop its own",
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per query, indexed")
    parser.add_argument("--baseline-runs", type=int, default=3, help="timed runs, baselines")
    parser.add_argument(
        "--retention", type=int, default=150, metavar="DAYS", help="0: skip the retention step"
    )
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
