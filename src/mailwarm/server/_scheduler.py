"""The in-process scheduler of the embedded default: every stored pool, warmed up in the
server's own event loop (production runs workers instead and turns it off).

Each tick, for every (organisation, pool) with at least two active accounts, an engine is
built from what the database holds now (so accounts paused or changed through the API are
seen at the next tick) and runs what is due. The database keeps all state; the engine's
in-memory pairing history restarts with each tick and process, so the partner cool-down is
enforced from the plans of the current day on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailwarm._clock import Clock, SystemClock, VirtualClock
from mailwarm._models import AccountStatus, Credentials, EmailAccount, PoolSettings, SendingWindow
from mailwarm.engine import Provider, WarmupEngine
from mailwarm.providers import OAuthApp, ProviderContext, create_provider
from mailwarm.providers.memory import MemoryNetwork
from mailwarm.storage import Accounts, Keyring, SqlStore
from mailwarm.storage._schema import email_accounts

__all__ = ["DEMO_TENANT", "Scheduler", "create_demo"]

log = logging.getLogger(__name__)

DEMO_TENANT = "demo"
DEMO_PROVIDER = "memory"


@dataclass
class Scheduler:
    """Runs the stored pools every ``tick`` seconds until cancelled.

    ``speed`` > 1 runs a virtual clock that many times faster than real time (the demo: a
    working day in minutes); 1 runs on the system clock.
    """

    engine: AsyncEngine
    keyring: Callable[[], Keyring]
    allow_private_hosts: bool = False
    tick: float = 15.0
    speed: float = 1.0
    network: MemoryNetwork | None = None  # the demo's in-memory mail network
    oauth: Mapping[str, OAuthApp] = field(default_factory=dict)  # to refresh OAuth tokens
    clock: Clock = field(default_factory=SystemClock)
    ticks: int = 0

    def __post_init__(self) -> None:
        if self.speed != 1.0 and not isinstance(self.clock, VirtualClock):
            raise ValueError("a speed other than 1 needs a VirtualClock")

    async def _pools(self) -> list[tuple[str, str]]:
        query = (
            select(email_accounts.c.tenant_id, email_accounts.c.pool)
            .distinct()
            .where(email_accounts.c.status == AccountStatus.ACTIVE.value)
            .order_by(email_accounts.c.tenant_id, email_accounts.c.pool)
        )
        async with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in (await conn.execute(query)).all()]

    def _factory(
        self,
        accounts: Accounts,
        creds: dict[str, Credentials],
        connections: dict[str, dict[str, object]],
    ) -> Callable[[EmailAccount], Provider]:
        context = ProviderContext(
            clock=self.clock,
            allow_private_hosts=self.allow_private_hosts,
            on_credentials=accounts.save_credentials,
            oauth=self.oauth,
        )

        def build(account: EmailAccount) -> Provider:
            if account.provider == DEMO_PROVIDER and self.network is not None:
                return self.network.provider(account)
            return create_provider(
                account, creds[account.id], connections[account.id], context=context
            )

        return build

    async def step(self) -> int:
        """One tick: every pool runs what is due now. Returns how many pools ran."""
        if isinstance(self.clock, VirtualClock) and self.speed != 1.0:
            self.clock.advance_to(self.clock.now() + timedelta(seconds=self.tick * self.speed))
        ran = 0
        for tenant_id, pool in await self._pools():
            accounts = Accounts(self.engine, self.keyring(), tenant_id=tenant_id, actor="scheduler")
            records = [r for r in await accounts.list(pool)]
            if sum(r.account.status is AccountStatus.ACTIVE for r in records) < 2:
                continue
            try:
                creds = {r.account.id: await accounts.credentials(r.account.id) for r in records}
                connections = {r.account.id: dict(r.connection) for r in records}
                settings = await accounts.pool_settings(pool)
                store = SqlStore(self.engine, tenant_id=tenant_id)
                async with WarmupEngine(
                    [r.account for r in records],
                    self._factory(accounts, creds, connections),
                    settings=settings,
                    clock=self.clock,
                    store=store,
                    seed=self.ticks,
                ) as warmup:
                    await warmup.run_until(self.clock.now())
                ran += 1
            except Exception:
                # One broken pool must not stop the others (its errors are in its activities
                # when they come from providers; this is for the rest).
                log.exception("pool %s of organisation %s failed this tick", pool, tenant_id)
        self.ticks += 1
        return ran

    async def run_forever(self, report: Callable[[str], None] | None = None) -> None:
        """Tick until cancelled; ``report`` (the demo's console) gets a line per virtual hour
        saying what the demo organisation's pool did so far."""
        last_hour = None
        while True:
            await self.step()
            hour = self.clock.now().replace(minute=0, second=0, microsecond=0)
            if report is not None and hour != last_hour:
                last_hour = hour
                report(await self._progress(hour))
            await asyncio.sleep(self.tick)

    async def _progress(self, hour: datetime) -> str:
        from sqlalchemy import func

        from mailwarm.storage._schema import activities

        query = (
            select(activities.c.action, activities.c.placement, func.count())
            .join(email_accounts, email_accounts.c.id == activities.c.account_id)
            .where(email_accounts.c.tenant_id == DEMO_TENANT)
            .group_by(activities.c.action, activities.c.placement)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        counts: dict[str, int] = {}
        for action, placement, n in rows:
            counts[action] = counts.get(action, 0) + n
            if action == "delivered" and placement:
                counts[f"placed:{placement}"] = counts.get(f"placed:{placement}", 0) + n
        located = counts.get("placed:inbox", 0) + counts.get("placed:spam", 0)
        inbox = f"{counts.get('placed:inbox', 0) / located:.0%}" if located else "-"
        return (
            f"demo {hour:%a %Y-%m-%d %H:%M} UTC (virtual): {counts.get('sent', 0)} sent, "
            f"{counts.get('delivered', 0)} delivered (inbox {inbox}), "
            f"{counts.get('opened', 0)} opened, {counts.get('replied', 0)} replies, "
            f"{counts.get('rescued_from_spam', 0)} rescued from spam"
        )


async def create_demo(engine: AsyncEngine, keyring: Keyring, network: MemoryNetwork) -> str | None:
    """The demo organisation: an owner and six mailboxes on the in-memory mail network that
    send around the clock. Returns the owner's new password the first time, else ``None``."""
    from sqlalchemy import insert

    from mailwarm.server._passwords import hash_password
    from mailwarm.storage._rows import ensure_tenant
    from mailwarm.storage._schema import users

    accounts = Accounts(engine, keyring, tenant_id=DEMO_TENANT, actor="demo")
    demo = [
        EmailAccount(
            id=f"demo-{i}",
            address=f"{name}@{company}.example",
            display_name=name.title(),
            provider=DEMO_PROVIDER,
            pool="demo",
            window=SendingWindow(start="00:00", end="23:59", weekdays=frozenset(range(7))),
            daily_cap=30,
        )
        for i, (name, company) in enumerate(
            [
                ("ann", "northwind"),
                ("ben", "contoso"),
                ("cleo", "fabrikam"),
                ("dev", "initech"),
                ("eva", "globex"),
                ("finn", "umbrella"),
            ]
        )
    ]
    network.add_accounts(demo)
    existing = {r.account.id for r in await accounts.list("demo")}
    password = None
    if not existing:
        password = secrets.token_urlsafe(12)
        async with engine.begin() as conn:
            await ensure_tenant(conn, DEMO_TENANT, "Demo")
            await conn.execute(
                insert(users).values(
                    id="demo-owner",
                    tenant_id=DEMO_TENANT,
                    email="owner@demo.example",
                    password_hash=await hash_password(password),
                    role="owner",
                )
            )
        await accounts.save_pool_settings(
            PoolSettings(name="demo", strategy={"kind": "preset", "name": "fast"})
        )
        for account in demo:
            # The in-memory network checks no password: a placeholder, not a secret.
            placeholder = Credentials(account_id=account.id, password="demo")  # noqa: S106
            await accounts.add(account, placeholder)
    return password
