"""Embed the warmup engine: a five-mailbox pool on the in-memory network for one week.

Run: python examples/embed_engine.py
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import mailwarm as mw
from mailwarm.providers.memory import MemoryNetwork


async def main() -> None:
    clock = mw.VirtualClock(datetime(2026, 1, 5, tzinfo=UTC))
    network = MemoryNetwork(clock)
    accounts = [
        mw.EmailAccount(id="ana", address="ana@northwind.example", timezone="Europe/Berlin"),
        mw.EmailAccount(id="ben", address="ben@contoso.example", provider="gmail"),
        mw.EmailAccount(id="cho", address="cho@fabrikam.example", timezone="Asia/Tokyo"),
        mw.EmailAccount(id="dev", address="dev@tailspin.example", provider="graph"),
        mw.EmailAccount(id="eva", address="eva@litware.example", timezone="America/New_York"),
    ]
    network.add_accounts(accounts)
    settings = mw.PoolSettings(strategy={"kind": "linear", "start": 2, "step": 1, "cap": 6})
    async with mw.WarmupEngine(
        accounts, network.provider, settings=settings, clock=clock, seed=1
    ) as engine:
        await engine.run_until(clock.now() + timedelta(days=7))
        counts = Counter(a.action.value for a in await engine.store.activities())
        print("activities:", dict(sorted(counts.items())))
        report = await engine.health("ana")
        print(f"ana: {report.state.value}, score {report.score} ({report.formula})")


if __name__ == "__main__":
    asyncio.run(main())
