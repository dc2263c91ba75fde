"""Rows <-> models for the account tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from mailwarm._models import EmailAccount, SendingWindow
from mailwarm.storage._schema import tenants

__all__ = ["account_from_row", "account_row", "ensure_tenant"]


def account_row(
    account: EmailAccount, tenant_id: str, connection: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``email_accounts`` row of an account (``connection``: non-secret settings)."""
    window = account.window
    return {
        "id": account.id,
        "tenant_id": tenant_id,
        "address": account.address,
        "display_name": account.display_name,
        "provider": account.provider,
        "status": account.status.value,
        "status_reason": account.status_reason,
        "timezone": account.timezone,
        "window": {
            "start": window.start.isoformat(),
            "end": window.end.isoformat(),
            "weekdays": sorted(window.weekdays),
        },
        "daily_cap": account.daily_cap,
        "strategy": account.strategy,
        "pool": account.pool,
        "organisation": account.organisation,
        "tags": list(account.tags),
        "warmup_started_on": account.warmup_started_on,
        "connection": dict(connection or {}),
    }


def account_from_row(row: Row[Any]) -> EmailAccount:
    """The account a row holds."""
    values = dict(row._mapping)
    return EmailAccount(
        id=values["id"],
        address=values["address"],
        display_name=values["display_name"],
        provider=values["provider"],
        status=values["status"],
        status_reason=values["status_reason"],
        timezone=values["timezone"],
        window=SendingWindow.model_validate(values["window"]),
        daily_cap=values["daily_cap"],
        strategy=values["strategy"],
        pool=values["pool"],
        organisation=values["organisation"],
        tags=list(values["tags"] or []),
        warmup_started_on=values["warmup_started_on"],
    )


async def ensure_tenant(conn: AsyncConnection, tenant_id: str, name: str | None = None) -> None:
    """Create the tenant row if it does not exist."""
    exists = await conn.scalar(select(tenants.c.id).where(tenants.c.id == tenant_id))
    if exists is None:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(
            dialect.insert(tenants)
            .values(id=tenant_id, name=name or tenant_id)
            .on_conflict_do_nothing(index_elements=["id"])
        )
