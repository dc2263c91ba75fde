"""The audit log: who did what, when, with what outcome (``audit_log`` rows, UTC times).

Every sign-in event and every change to users is recorded. ``detail`` is stored as JSON
data (never interpolated into SQL or text) and must never hold a password or a token:
:func:`record` refuses the keys that would.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailwarm.storage._schema import audit_log

__all__ = ["FORBIDDEN_DETAIL_KEYS", "record"]

# Keys a detail may never carry, whatever a caller passes.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {
        "password",
        "password_hash",
        "new_password",
        "token",
        "access_token",
        "refresh_token",
        "secret",
    }
)
ACTOR_MAX = 320


def _now() -> datetime:
    return datetime.now(UTC)


def _clean(outcome: str, detail: Mapping[str, Any] | None) -> dict[str, Any]:
    values = dict(detail or {})
    bad = FORBIDDEN_DETAIL_KEYS & {k.lower() for k in values}
    if bad:
        raise ValueError(f"audit detail may not hold secrets: {', '.join(sorted(bad))}")
    return {"outcome": outcome, **values}


async def record(
    conn_or_engine: AsyncConnection | AsyncEngine,
    tenant_id: str | None,
    actor: str,
    action: str,
    outcome: str,
    target_type: str | None = None,
    target_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Write one audit row. With a connection it joins that transaction (the event is
    recorded only if the change commits); with an engine it commits on its own."""
    statement = insert(audit_log).values(
        at=_now(),
        tenant_id=tenant_id,
        actor=actor[:ACTOR_MAX],
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=_clean(outcome, detail),
    )
    if isinstance(conn_or_engine, AsyncEngine):
        async with conn_or_engine.begin() as conn:
            await conn.execute(statement)
    else:
        await conn_or_engine.execute(statement)
