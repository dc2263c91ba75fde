"""``/analytics``: daily series and per-provider placement, for an account, a pool or the
whole organisation (definitions: docs/storage/analytics.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from mailwarm.server._deps import Database, require
from mailwarm.server._jwt import Principal
from mailwarm.server._roles import Permission
from mailwarm.server._schemas import QueryDate
from mailwarm.server.routes.accounts import account_or_404
from mailwarm.storage import Analytics, Stats

__all__ = ["router"]

router = APIRouter(tags=["analytics"])

ReadCaller = Annotated[Principal, Depends(require(Permission.READ))]
MAX_DAYS = 366


class Figures(BaseModel):
    """Counts and rates of one period (rates are ``null`` when their denominator is 0)."""

    sent: int
    received: int
    located: int
    inbox: int
    spam: int
    missing: int
    rescued: int
    replies: int
    bounces: int
    auth_failures: int
    inbox_rate: float | None
    spam_rate: float | None
    bounce_rate: float | None


class DayFigures(Figures):
    """One UTC day."""

    day: date


class ProviderFigures(Figures):
    """One receiving provider (``null``: partners of unknown provider)."""

    provider: str | None


def _figures(stats: Stats) -> dict[str, Any]:
    return {
        "sent": stats.sent,
        "received": stats.received,
        "located": stats.located,
        "inbox": stats.inbox,
        "spam": stats.spam,
        "missing": stats.missing,
        "rescued": stats.rescued,
        "replies": stats.replies,
        "bounces": stats.bounces,
        "auth_failures": stats.auth_failures,
        "inbox_rate": stats.inbox_rate,
        "spam_rate": stats.spam_rate,
        "bounce_rate": stats.bounce_rate,
    }


async def _query(
    database: Any,
    caller: Principal,
    account_id: str | None,
    pool: str | None,
    start: date | None,
    end: date | None,
) -> tuple[Analytics, dict[str, Any]] | None:
    """The organisation's analytics and the arguments of one query (the period at most
    ``MAX_DAYS``, the latest ones; ``account_id`` wins over ``pool``), or ``None`` for an
    empty period. Another organisation's account is a 404."""
    if account_id is not None:
        async with database.connect() as conn:
            await account_or_404(conn, caller.tenant_id, account_id)
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=29)
    if start > end:
        return None
    start = max(start, end - timedelta(days=MAX_DAYS - 1))
    arguments = {
        "start": start,
        "end": end,
        "account_id": account_id,
        "pool": None if account_id else pool,
    }
    return Analytics(database, tenant_id=caller.tenant_id), arguments


Start = Annotated[QueryDate | None, Query(description="First UTC day (default: 30 days ago).")]
End = Annotated[QueryDate | None, Query(description="Last UTC day, included (default: today).")]
AccountId = Annotated[str | None, Query(description="One account (default: all).")]
Pool = Annotated[str | None, Query(description="One pool's accounts (with no account_id).")]


@router.get("/analytics/daily", response_model=list[DayFigures], summary="Daily series")
async def daily(
    caller: ReadCaller,
    database: Database,
    account_id: AccountId = None,
    pool: Pool = None,
    start: Start = None,
    end: End = None,
) -> list[DayFigures]:
    """Per UTC day: sends, received, placement (inbox/spam rates), rescues, replies, bounces
    of an account, a pool (``account_id`` wins when both are given) or the organisation; at
    most 366 days, the latest ones when more are asked for; empty when ``start`` is after
    ``end``."""
    query = await _query(database, caller, account_id, pool, start, end)
    if query is None:
        return []
    analytics, arguments = query
    return [DayFigures(day=r.day, **_figures(r)) for r in await analytics.daily(**arguments)]


@router.get(
    "/analytics/providers", response_model=list[ProviderFigures], summary="Per receiving provider"
)
async def providers(
    caller: ReadCaller,
    database: Database,
    account_id: AccountId = None,
    pool: Pool = None,
    start: Start = None,
    end: End = None,
) -> list[ProviderFigures]:
    """The same figures per receiving provider (the partner's provider) over a period."""
    query = await _query(database, caller, account_id, pool, start, end)
    if query is None:
        return []
    analytics, arguments = query
    rows = await analytics.by_provider(**arguments)
    return [ProviderFigures(provider=r.provider, **_figures(r)) for r in rows]
