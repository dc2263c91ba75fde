"""Sessions: opaque refresh tokens, stored only as SHA-256 hashes, rotated on every use.

A login starts a *family*; each refresh revokes the token it was given and issues the next
one of the same family. Presenting a token that was already used (or revoked) is taken as
theft: the whole family is revoked. A family ends ``session_max`` after its login however
often it is rotated; each token also expires ``refresh_ttl`` after it was issued.

Rotation is one conditional ``UPDATE ... WHERE revoked_at IS NULL``: of two concurrent
refreshes with the same token exactly one changes the row, the other is a reuse.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import Request
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailwarm.server._deps import services
from mailwarm.server._jwt import Principal
from mailwarm.server._problems import Problem
from mailwarm.server._roles import Role
from mailwarm.server._settings import ServerSettings
from mailwarm.storage._schema import refresh_tokens, users

__all__ = [
    "CHECK_PRINCIPAL",
    "Rotated",
    "SessionError",
    "family_of",
    "hash_token",
    "install_principal_check",
    "new_refresh_token",
    "now",
    "principal_checker",
    "revoke_family",
    "revoke_user",
    "rotate",
    "start_session",
    "wire_principal_check",
]

CHECK_PRINCIPAL = "check_principal"  # the key of the hook in ``Services.extras``


def _now() -> datetime:
    return datetime.now(UTC)  # tests move the clock by replacing this function


def now() -> datetime:
    """The current time as the sessions see it."""
    return _now()


def new_refresh_token() -> str:
    """A fresh opaque refresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in place of a refresh token."""
    return hashlib.sha256(token.encode()).hexdigest()


class SessionError(Exception):
    """A refresh token that cannot be used: ``unknown``, ``expired``, ``reused`` (a used
    token again: its family was live and is now revoked) or ``revoked`` (family over)."""

    def __init__(
        self,
        reason: Literal["unknown", "expired", "reused", "revoked"],
        user_id: str | None = None,
        family: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason, self.user_id, self.family = reason, user_id, family


@dataclass(frozen=True)
class Rotated:
    """A successful refresh: the new token, its family and the user it belongs to."""

    token: str
    user_id: str
    family: str


async def _insert(
    conn: AsyncConnection,
    user_id: str,
    family: str,
    family_started_at: datetime,
    settings: ServerSettings,
    at: datetime,
) -> str:
    token = new_refresh_token()
    await conn.execute(
        insert(refresh_tokens).values(
            id=uuid.uuid4().hex,
            user_id=user_id,
            token_hash=hash_token(token),
            family=family,
            family_started_at=family_started_at,
            issued_at=at,
            expires_at=min(at + settings.refresh_ttl, family_started_at + settings.session_max),
        )
    )
    return token


async def start_session(
    conn: AsyncConnection, user_id: str, settings: ServerSettings
) -> tuple[str, str]:
    """A new family for a login: ``(refresh token, family id)``."""
    at = now()
    family = uuid.uuid4().hex
    return await _insert(conn, user_id, family, at, settings, at), family


async def rotate(conn: AsyncConnection, token: str, settings: ServerSettings) -> Rotated:
    """Use ``token`` once: revoke it and issue its successor, or raise :class:`SessionError`
    (a reuse has then already revoked the family, in ``conn``'s transaction)."""
    at = now()
    digest = hash_token(token)
    used = await conn.execute(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.token_hash == digest,
            refresh_tokens.c.revoked_at.is_(None),
            refresh_tokens.c.expires_at > at,
            refresh_tokens.c.family_started_at > at - settings.session_max,
        )
        .values(revoked_at=at)
    )
    row = (
        await conn.execute(
            select(
                refresh_tokens.c.user_id,
                refresh_tokens.c.family,
                refresh_tokens.c.family_started_at,
                refresh_tokens.c.revoked_at,
            ).where(refresh_tokens.c.token_hash == digest)
        )
    ).first()
    if row is None:
        raise SessionError("unknown")
    if used.rowcount == 1:
        new = await _insert(conn, row.user_id, row.family, row.family_started_at, settings, at)
        return Rotated(new, row.user_id, row.family)
    if row.revoked_at is not None:
        # Already used: someone holds a copy. End the whole family (a token of a family that
        # is already over, e.g. after a logout, is only refused).
        if await revoke_family(conn, row.family):
            raise SessionError("reused", row.user_id, row.family)
        raise SessionError("revoked", row.user_id, row.family)
    await revoke_family(conn, row.family)  # expired: nothing of the family is usable any more
    raise SessionError("expired", row.user_id, row.family)


async def revoke_family(conn: AsyncConnection, family: str) -> int:
    """Revoke every live token of ``family``; how many were live."""
    result = await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family == family, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    return int(result.rowcount)


async def family_of(conn: AsyncConnection, token: str) -> tuple[str, str] | None:
    """``(user id, family)`` of a refresh token, used or not; ``None`` if unknown."""
    row = (
        await conn.execute(
            select(refresh_tokens.c.user_id, refresh_tokens.c.family).where(
                refresh_tokens.c.token_hash == hash_token(token)
            )
        )
    ).first()
    return None if row is None else (row.user_id, row.family)


async def revoke_user(conn: AsyncConnection, user_id: str) -> int:
    """Revoke every live refresh token of a user (logout everywhere, disabling)."""
    result = await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    return int(result.rowcount)


def principal_checker(engine: AsyncEngine) -> Callable[[Principal], Awaitable[None]]:
    """The ``check_principal`` hook: an access token counts only while its user exists in
    its organisation, is not disabled and still has the role the token names (so disabling,
    deleting or demoting a user takes effect at once, not when the token expires)."""

    async def check(principal: Principal) -> None:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(users.c.tenant_id, users.c.role, users.c.disabled).where(
                        users.c.id == principal.user_id
                    )
                )
            ).first()
        if (
            row is None
            or row.disabled
            or row.tenant_id != principal.tenant_id
            or Role(row.role) != principal.role
        ):
            raise Problem(
                401,
                "the access token is invalid or expired: refresh it or sign in again",
                headers={"WWW-Authenticate": 'Bearer realm="mailwarm"'},
            )

    return check


def install_principal_check(extras: dict[str, Any], engine: AsyncEngine) -> None:
    """Set the ``check_principal`` hook in ``Services.extras`` (kept if already set)."""
    extras.setdefault(CHECK_PRINCIPAL, principal_checker(engine))


def wire_principal_check(request: Request) -> None:
    """A router dependency that makes sure the hook is set before the caller is checked
    (for apps whose factory did not call :func:`install_principal_check`)."""
    found = services(request)
    install_principal_check(found.extras, found.engine)
