"""``mailwarm check`` and ``mailwarm run``: a pool file of real mailboxes."""

from __future__ import annotations

import asyncio
import time as wall
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mailwarm._clock import Clock, SystemClock, VirtualClock
from mailwarm._errors import ConfigurationError
from mailwarm._models import ActivityAction, EmailAccount, Placement, PoolSettings, TaskKind
from mailwarm.engine import CheckReport, Provider, Store, WarmupEngine
from mailwarm.poolfile import PoolFile, load_pool
from mailwarm.providers import create_provider

__all__ = ["check", "run"]

PoolArg = Annotated[
    Path, typer.Argument(help="The pool file (TOML): [pool] and [[accounts]] tables.")
]


async def _check_all(pool: PoolFile) -> list[CheckReport]:
    factory = pool.provider_factory(pool.context())

    async def one(index: int) -> CheckReport:
        provider = factory(pool.accounts[index].account)
        try:
            return await provider.check()
        finally:
            await provider.aclose()

    return list(await asyncio.gather(*(one(i) for i in range(len(pool.accounts)))))


def check(pool_file: PoolArg) -> None:
    """Connect every account of a pool file and say, per account, what works and what not."""
    pool = load_pool(pool_file)
    reports = asyncio.run(_check_all(pool))
    table = Table(title=f"{pool.settings.name}: {len(reports)} accounts")
    table.add_column("account")
    table.add_column("provider")
    table.add_column("checks")
    table.add_column("what to fix")
    for entry, report in zip(pool.accounts, reports, strict=True):
        checks = Text()
        for name, ok in report.checks.items():
            checks.append(f"{name} ", style="green" if ok else "red bold")
            checks.append("ok  " if ok else "FAILED  ", style="green" if ok else "red bold")
        fix = "\n".join(report.problems) if report.problems else "nothing: ready"
        table.add_row(entry.account.address, entry.account.provider, checks, fix)
    console = Console(width=max(Console().width, 120))
    console.print(table)
    failed = sum(not r.ok for r in reports)
    if failed:
        console.print(f"[red bold]{failed} of {len(reports)} accounts need attention.[/]")
        raise typer.Exit(1)
    console.print(f"[green]All {len(reports)} accounts are ready for warmup.[/]")


async def _view(engine: WarmupEngine, day_start: datetime) -> Table:
    """Today's plan and progress per account (local days differ; UTC day shown)."""
    pending: Counter[str] = Counter(
        t.account_id
        for t in await engine.store.pending()
        if t.kind is TaskKind.SEND and t.due_at < day_start + timedelta(days=1)
    )
    counts: dict[str, Counter[str]] = {a: Counter() for a in engine.accounts}
    for activity in await engine.store.activities(since=day_start):
        c = counts.setdefault(activity.account_id, Counter())
        c[activity.action.value] += 1
        if activity.action is ActivityAction.DELIVERED:
            c[f"placed:{(activity.placement or Placement.UNKNOWN).value}"] += 1
    table = Table(title=f"{engine.settings.name} on {engine.clock.now():%Y-%m-%d %H:%M} UTC")
    table.add_column("account", overflow="fold")
    table.add_column("status", overflow="fold")
    for column in ("sent / planned", "inbox", "spam", "replies", "rescued"):
        table.add_column(column, justify="right")
    for account in engine.accounts.values():
        c = counts.get(account.id, Counter())
        state = engine.health_states.get(account.id)
        status = account.status.value if state is None else f"{account.status.value}/{state.value}"
        table.add_row(
            account.address,
            status,
            f"{c['sent']} / {c['sent'] + pending[account.id]}",
            str(c["placed:inbox"]),
            str(c["placed:spam"]),
            str(c["replied"]),
            str(c["rescued_from_spam"]),
        )
    return table


@dataclass
class _Pool:
    """What ``run`` runs: accounts, how to build their providers, settings and the store."""

    accounts: list[EmailAccount]
    factory: Callable[[Clock], Callable[[EmailAccount], Provider]]
    settings: PoolSettings
    store: Store | None = None


def _from_file(pool: PoolFile) -> _Pool:
    return _Pool(
        [entry.account for entry in pool.accounts],
        lambda clock: pool.provider_factory(pool.context(clock=clock)),
        pool.settings,
    )


async def _from_database(database: str | None, pool_name: str) -> tuple[_Pool, Any]:
    from mailwarm.cli._db_commands import open_accounts
    from mailwarm.providers import ProviderContext
    from mailwarm.storage import SqlStore

    accounts = await asyncio.to_thread(open_accounts, database, actor="mailwarm run")
    records = await accounts.list(pool_name)
    if len(records) < 2:
        await accounts.aclose()
        raise ConfigurationError(
            f"pool {pool_name!r} in the database has {len(records)} account(s); warmup needs at "
            "least two: `mailwarm accounts add --pool ...` more"
        )
    settings = await accounts.pool_settings(pool_name)
    creds = {r.account.id: await accounts.credentials(r.account.id) for r in records}
    connections = {r.account.id: r.connection for r in records}

    def factory(clock: Clock) -> Callable[[EmailAccount], Provider]:
        context = ProviderContext(clock=clock, on_credentials=accounts.save_credentials)

        def build(account: EmailAccount) -> Provider:
            return create_provider(
                account, creds[account.id], connections[account.id], context=context
            )

        return build

    return _Pool(
        [r.account for r in records], factory, settings, SqlStore(accounts.engine)
    ), accounts


async def _run(pool: _Pool, days: int | None, warp: bool, seed: int, console: Console) -> int:
    start = datetime.now(UTC)
    clock: Clock = VirtualClock(start) if warp else SystemClock()
    accounts = pool.accounts
    # Forever, in practice, when no --days is given: Ctrl-C stops it.
    until = start + (timedelta(days=days) if days is not None else timedelta(days=36500))
    async with WarmupEngine(
        accounts,
        pool.factory(clock),
        settings=pool.settings,
        clock=clock,
        seed=seed,
        store=pool.store,
    ) as engine:
        last = 0.0
        with Live(console=console, auto_refresh=False, transient=False) as live:
            refresh: asyncio.Task[None] | None = None

            async def draw() -> None:
                now = engine.clock.now()
                day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
                live.update(Group(await _view(engine, day_start)), refresh=True)

            def on_step(now: datetime) -> None:
                nonlocal last, refresh
                if wall.monotonic() - last >= 0.5 and (refresh is None or refresh.done()):
                    last = wall.monotonic()
                    refresh = asyncio.get_running_loop().create_task(draw())

            await engine.run_until(until, on_step=on_step)
            if refresh is not None:
                await refresh
            await draw()
        activities = await engine.store.activities()
    sent = sum(a.action is ActivityAction.SENT for a in activities)
    replies = sum(a.action is ActivityAction.REPLIED for a in activities)
    failed = sum(a.action in (ActivityAction.FAILED, ActivityAction.BOUNCED) for a in activities)
    span = engine.clock.now() - start
    if not console.is_terminal:
        console.print()  # a non-terminal Live leaves its last frame without a line end
    console.print(
        f"Ran {span.days} days {span.seconds // 3600} h of schedule: {sent} sent, "
        f"{replies} replies, {failed} failed."
    )
    return failed


def run(
    pool_file: Annotated[
        Path | None,
        typer.Argument(
            help="The pool file (TOML); or give --database instead.", show_default=False
        ),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            min=1, max=3650, help="Stop after this many days (default: run until Ctrl-C)."
        ),
    ] = None,
    warp: Annotated[
        bool,
        typer.Option(
            help="Run the schedule as fast as the servers allow: a virtual clock that jumps to "
            "the next due task (for sandboxes and tests; needs --days)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for the planner's randomness.")] = 0,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="Run the pool stored in this database (URL; `default` means "
            "MAILWARM_DATABASE_URL or the SQLite file in your data directory), keeping all "
            "state there, instead of a pool file.",
            show_default=False,
        ),
    ] = None,
    pool_name: Annotated[
        str, typer.Option("--pool", help="With --database: which stored pool to run.")
    ] = "default",
) -> None:
    """Run warmup on real mailboxes (a pool file, or a pool stored with --database), with a
    live view of today's plan and progress."""
    if warp and days is None:
        raise typer.BadParameter(
            "--warp needs --days (how much schedule to run)", param_hint="--warp"
        )
    if (pool_file is None) == (database is None):
        raise typer.BadParameter(
            "give a pool file or --database (one of them)", param_hint="POOL_FILE / --database"
        )
    console = Console()

    async def go() -> int:
        if pool_file is not None:
            return await _run(_from_file(load_pool(pool_file)), days, warp, seed, console)
        url = None if database == "default" else database
        pool, accounts = await _from_database(url, pool_name)
        try:
            return await _run(pool, days, warp, seed, console)
        finally:
            await accounts.aclose()

    try:
        failed = asyncio.run(go())
    except KeyboardInterrupt:
        console.print("Stopped.")
        return
    if failed:
        console.print(
            "[yellow]Some tasks failed or bounced: `mailwarm check` the pool to see why.[/]"
        )
