"""The embedded scheduler runs stored pools; the demo pool warms up on its own."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

import mailwarm as mw
from conftest import SECRET  # type: ignore[import-not-found]
from mailwarm.providers.memory import MemoryNetwork
from mailwarm.server import ServerSettings, create_app
from mailwarm.server._scheduler import DEMO_TENANT, Scheduler, create_demo
from mailwarm.storage import (
    Accounts,
    Keyring,
    SqlStore,
    create_engine,
    format_key,
    generate_master_key,
    upgrade,
)
from mailwarm.storage._schema import activities


async def test_a_scheduler_tick_runs_each_stored_pool_and_sees_pauses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    await upgrade(url)
    engine = create_engine(url)
    keys = Keyring([generate_master_key("k1")])
    clock = mw.VirtualClock(datetime(2026, 1, 5, tzinfo=UTC))  # a Monday
    network = MemoryNetwork(clock)
    await create_demo(engine, keys, network)
    # speed 1 on a virtual clock: the test moves the clock itself, ten minutes per tick.
    scheduler = Scheduler(engine, lambda: keys, tick=600, network=network, clock=clock)
    for _ in range(24 * 6):  # one virtual day in ten-minute ticks
        clock.advance_to(clock.now() + timedelta(minutes=10))
        assert await scheduler.step() == 1
    accounts = Accounts(engine, keys, tenant_id=DEMO_TENANT)
    store = SqlStore(engine, tenant_id=DEMO_TENANT)
    sent = Counter(a.account_id for a in await store.activities() if a.action.value == "sent")
    assert sum(sent.values()) >= 10
    assert set(sent) == {f"demo-{i}" for i in range(6)}
    # Paused through storage (as the API does): the next day it plans nothing for it.
    await accounts.set_status("demo-0", mw.AccountStatus.PAUSED, "test")
    before = sent["demo-0"]
    for _ in range(24 * 6):
        clock.advance_to(clock.now() + timedelta(minutes=10))
        await scheduler.step()
    after = Counter(a.account_id for a in await store.activities() if a.action.value == "sent")
    assert after["demo-0"] == before
    assert after["demo-1"] > sent["demo-1"]
    await engine.dispose()


async def test_the_demo_server_warms_up_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAILWARM_MASTER_KEYS", format_key(generate_master_key("k1")))
    settings = ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'demo.db'}",
        jwt_secret=SECRET,  # type: ignore[arg-type]
        demo=True,
        demo_speed=5000,  # 0.05 s ticks: over four virtual minutes each
        scheduler_tick_seconds=0.05,
    )
    assert settings.database_url is not None
    await upgrade(settings.database_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        engine = app.state.services.engine
        sends = 0
        for _ in range(400):  # bounded: at most 20 s
            await asyncio.sleep(0.05)
            async with engine.connect() as conn:
                sends = int(
                    await conn.scalar(select(func.count()).where(activities.c.action == "sent"))
                    or 0
                )
            if sends >= 5:
                break
        assert sends >= 5
    printed = capsys.readouterr().out
    assert "sign in as owner@demo.example / " in printed
    # An hour of virtual time per line, on the console, saying what the pool did.
    progress = [line for line in printed.splitlines() if line.startswith("demo ")]
    assert progress
    assert " sent, " in progress[-1]
    assert "(inbox " in progress[-1]
