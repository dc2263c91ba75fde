"""``mailwarm check`` and ``mailwarm run``: a pool file of real mailboxes."""

from __future__ import annotations

import asyncio
import time as wall
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mailwarm._clock import Clock, SystemClock, VirtualClock
from mailwarm._models import ActivityAction, Placement, TaskKind
from mailwarm.engine import CheckReport, WarmupEngine
from mailwarm.poolfile import PoolFile, load_pool

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


async def _run(pool: PoolFile, days: int | None, warp: bool, seed: int, console: Console) -> int:
    start = datetime.now(UTC)
    clock: Clock = VirtualClock(start) if warp else SystemClock()
    context = pool.context(clock=clock)
    accounts = [entry.account for entry in pool.accounts]
    # Forever, in practice, when no --days is given: Ctrl-C stops it.
    until = start + (timedelta(days=days) if days is not None else timedelta(days=36500))
    async with WarmupEngine(
        accounts, pool.provider_factory(context), settings=pool.settings, clock=clock, seed=seed
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
    pool_file: PoolArg,
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
) -> None:
    """Run warmup on the pool's real mailboxes, with a live view of today's plan and progress."""
    if warp and days is None:
        raise typer.BadParameter(
            "--warp needs --days (how much schedule to run)", param_hint="--warp"
        )
    pool = load_pool(pool_file)
    console = Console()
    try:
        failed = asyncio.run(_run(pool, days, warp, seed, console))
    except KeyboardInterrupt:
        console.print("Stopped.")
        return
    if failed:
        console.print(
            "[yellow]Some tasks failed or bounced: `mailwarm check` the pool to see why.[/]"
        )
