"""Plan one day for a large pool: time, peak memory, and the ratio against a naive baseline.

The pool: accounts at warmup days 1-30 (medium preset, daily cap 40), in five timezones, one
to three mailboxes per company. The naive baseline is what a straightforward implementation
does: for each account and each send, build the send time with datetime arithmetic and scan the
whole pool for an eligible recipient (no index). It is measured on a subset in the same run,
and the fast planner on the same subset, so the ratio compares like with like.

    python benchmarks/plan_day.py [--accounts 100000] [--baseline 2000]
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from mailwarm import EmailAccount, PoolSettings, plan_day
from mailwarm.strategies import RampContext, strategy_from_spec

DAY = date(2026, 3, 4)  # a Wednesday
ZONES = ("Europe/Berlin", "America/New_York", "Europe/London", "America/Los_Angeles", "Asia/Tokyo")


def make_accounts(n: int, seed: int = 1) -> list[EmailAccount]:
    rng = random.Random(seed)
    accounts = []
    company = 0
    for i in range(n):
        if rng.random() < 0.6:
            company += 1
        accounts.append(
            EmailAccount(
                id=f"a{i}",
                address=f"user{i}@company{company}.example",
                provider=("gmail", "graph", "smtp")[i % 3],
                timezone=ZONES[i % len(ZONES)],
                warmup_started_on=DAY - timedelta(days=rng.randrange(30)),
            )
        )
    return accounts


def naive_plan(accounts: list[EmailAccount], settings: PoolSettings, seed: int = 0) -> int:
    """Per-account loop, one datetime per send, a full pool scan per recipient choice."""
    rng = random.Random(seed)
    strategy = strategy_from_spec(settings.strategy)
    planned = 0
    for account in accounts:
        day_number = (DAY - (account.warmup_started_on or DAY)).days + 1
        eligible_count = sum(1 for other in accounts if other.org_key != account.org_key)
        ctx = RampContext(
            account_id=account.id, day=day_number, date=DAY, eligible_recipients=eligible_count
        )
        target = min(strategy(ctx), account.daily_cap)
        zone = ZoneInfo(account.timezone)
        start = datetime.combine(DAY, account.window.start, tzinfo=zone).astimezone(UTC)
        end = datetime.combine(DAY, account.window.end, tzinfo=zone).astimezone(UTC)
        step = (end - start) / max(target, 1)
        chosen: set[str] = set()
        for k in range(target):
            when = start + step * k + timedelta(seconds=rng.uniform(0, step.total_seconds() * 0.9))
            candidates = [
                other.id
                for other in accounts
                if other.id != account.id
                and other.org_key != account.org_key
                and other.id not in chosen
            ]
            if not candidates:
                break
            chosen.add(rng.choice(candidates))
            planned += 1 if when else 0
    return planned


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument(
        "--baseline", type=int, default=2_000, help="pool size for the naive comparison"
    )
    args = parser.parse_args()
    settings = PoolSettings()

    subset = make_accounts(args.baseline)
    naive_sends, naive_s = timed(naive_plan, subset, settings)
    fast_plan, fast_s = timed(plan_day, subset, DAY, settings=settings, seed=1)
    print(
        f"baseline pool of {args.baseline:,}: naive {naive_s:.2f} s ({naive_sends:,} sends), "
        f"mailwarm {fast_s:.3f} s ({fast_plan.total_sends:,} sends): "
        f"{naive_s / fast_s:,.0f}x faster"
    )

    accounts = make_accounts(args.accounts)
    runs = [timed(plan_day, accounts, DAY, settings=settings, seed=1) for _ in range(3)]
    elapsed = sorted(t for _, t in runs)[1]
    plan = runs[0][0]
    print(
        f"plan_day for {args.accounts:,} accounts (median of 3): {elapsed:.2f} s, "
        f"{plan.total_sends:,} sends "
        f"({plan.total_sends / elapsed:,.0f} sends/s)"
    )

    tracemalloc.start()
    plan = plan_day(accounts, DAY, settings=settings, seed=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak memory while planning (tracemalloc): {peak / 2**20:,.0f} MiB")
    target_ok = elapsed < 5 and peak < 500 * 2**20
    print(f"target (< 5 s and < 500 MB for 100,000 accounts): {'met' if target_ok else 'NOT met'}")


if __name__ == "__main__":
    main()
