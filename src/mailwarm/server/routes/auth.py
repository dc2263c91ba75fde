"""The ``auth`` routes: sign in, refresh, sign out, who am I (docs/server/auth.md)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mailwarm.server._audit import record
from mailwarm.server._deps import Caller, Database, Settings
from mailwarm.server._jwt import Principal, issue_access_token
from mailwarm.server._passwords import hash_password, needs_rehash, verify_password
from mailwarm.server._problems import Problem
from mailwarm.server._ratelimit import RateLimited, client_ip, limit_login, too_many
from mailwarm.server._roles import Role
from mailwarm.server._sessions import (
    SessionError,
    family_of,
    revoke_family,
    revoke_user,
    rotate,
    start_session,
    wire_principal_check,
)
from mailwarm.server._settings import ServerSettings
from mailwarm.storage._schema import tenants, users

__all__ = ["router"]

router = APIRouter(prefix="/auth", tags=["auth"], dependencies=[Depends(wire_principal_check)])

UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="mailwarm"'}
WRONG_CREDENTIALS = "the email or password is wrong"
BAD_REFRESH = "the refresh token is invalid, expired or already used: sign in again"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(_Body):
    """Email and password."""

    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(_Body):
    """A refresh token from the login or the previous refresh."""

    refresh_token: str = Field(min_length=1, max_length=512)


class Tokens(BaseModel):
    """An access token (bearer, ``expires_in`` seconds) and the refresh token that replaces
    it; the refresh token works once."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme's name, not a secret
    expires_in: int


class Organisation(BaseModel):
    """The caller's organisation."""

    id: str
    name: str


class Me(BaseModel):
    """The signed-in user."""

    id: str
    email: str
    role: Role
    organisation: Organisation


def _tokens(principal: Principal, refresh_token: str, settings: ServerSettings) -> Tokens:
    return Tokens(
        access_token=issue_access_token(principal, settings),
        refresh_token=refresh_token,
        expires_in=int(settings.access_ttl.total_seconds()),
    )


async def _user_by_email(conn: AsyncConnection, email: str) -> Any:
    return (
        await conn.execute(
            select(
                users.c.id,
                users.c.tenant_id,
                users.c.password_hash,
                users.c.role,
                users.c.disabled,
            ).where(func.lower(users.c.email) == email.strip().lower())
        )
    ).first()


@router.post("/login", response_model=Tokens, summary="Sign in with email and password")
async def login(body: Login, request: Request, database: Database, settings: Settings) -> Tokens:
    """Tokens for a valid email and password. A wrong email and a wrong password get the
    same 401 after the same work; attempts are limited per account and per address."""
    email = body.email.strip().lower()
    try:
        await limit_login(request, email)
    except RateLimited as exc:
        async with database.connect() as conn:
            row = await _user_by_email(conn, email)
        await record(
            database,
            row.tenant_id if row else None,
            row.id if row else "anonymous",
            "login",
            "limited",
            "user",
            row.id if row else None,
            {"email": email, "ip": client_ip(request, settings.trusted_proxies)},
        )
        raise too_many(exc, "sign-in attempts") from None
    async with database.connect() as conn:
        row = await _user_by_email(conn, email)
    ok = await verify_password(row.password_hash if row else None, body.password)
    if row is None or not ok or row.disabled:
        reason = "unknown email" if row is None else "disabled" if ok else "wrong password"
        await record(
            database,
            row.tenant_id if row else None,
            row.id if row else "anonymous",
            "login",
            "failed",
            "user",
            row.id if row else None,
            {"email": email, "reason": reason, "ip": client_ip(request, settings.trusted_proxies)},
        )
        raise Problem(401, WRONG_CREDENTIALS, headers=UNAUTHORIZED)
    new_hash = await hash_password(body.password) if needs_rehash(row.password_hash) else None
    async with database.begin() as conn:
        if new_hash is not None:
            await conn.execute(
                update(users).where(users.c.id == row.id).values(password_hash=new_hash)
            )
        refresh_token, family = await start_session(conn, row.id, settings)
        await record(
            conn,
            row.tenant_id,
            row.id,
            "login",
            "ok",
            "user",
            row.id,
            {
                "family": family,
                "rehashed": new_hash is not None,
                "ip": client_ip(request, settings.trusted_proxies),
            },
        )
    return _tokens(Principal(row.id, row.tenant_id, Role(row.role)), refresh_token, settings)


@router.post("/refresh", response_model=Tokens, summary="Trade a refresh token for new tokens")
async def refresh(body: RefreshRequest, database: Database, settings: Settings) -> Tokens:
    """New tokens; the refresh token given is used up. Using a used token again revokes its
    whole family (every session that descends from the same login): 401."""
    failure: SessionError | None = None
    row: Any = None
    async with database.begin() as conn:
        try:
            rotated = await rotate(conn, body.refresh_token, settings)
        except SessionError as exc:
            failure = exc
        else:
            row = (
                await conn.execute(
                    select(users.c.tenant_id, users.c.role, users.c.disabled).where(
                        users.c.id == rotated.user_id
                    )
                )
            ).first()
            if row is None or row.disabled:
                await revoke_family(conn, rotated.family)
                failure = SessionError("revoked", rotated.user_id, rotated.family)
            else:
                await record(
                    conn,
                    row.tenant_id,
                    rotated.user_id,
                    "refresh",
                    "ok",
                    "user",
                    rotated.user_id,
                    {"family": rotated.family},
                )
    if failure is not None:
        tenant = None
        if failure.user_id is not None:
            async with database.connect() as conn:
                tenant = await conn.scalar(
                    select(users.c.tenant_id).where(users.c.id == failure.user_id)
                )
        await record(
            database,
            tenant,
            failure.user_id or "anonymous",
            "refresh_reuse_detected" if failure.reason == "reused" else "refresh",
            "denied" if failure.reason == "reused" else "failed",
            "user" if failure.user_id else None,
            failure.user_id,
            {"reason": failure.reason, "family": failure.family},
        )
        raise Problem(401, BAD_REFRESH, headers=UNAUTHORIZED)
    return _tokens(
        Principal(rotated.user_id, row.tenant_id, Role(row.role)), rotated.token, settings
    )


@router.post("/logout", status_code=204, summary="Sign out this session")
async def logout(body: RefreshRequest, database: Database) -> Response:
    """Revoke the refresh token given and every token of its family (this login's session).
    Needs no access token, so an expired one does not keep a client signed in; answers 204
    whether the token was known or not."""
    async with database.begin() as conn:
        found = await family_of(conn, body.refresh_token)
        if found is not None:
            user_id, family = found
            revoked = await revoke_family(conn, family)
            tenant = await conn.scalar(select(users.c.tenant_id).where(users.c.id == user_id))
            await record(
                conn, tenant, user_id, "logout", "ok", "user", user_id,
                {"family": family, "revoked": revoked},
            )  # fmt: skip
    return Response(status_code=204)


@router.post("/logout-all", status_code=204, summary="Sign out every session of the caller")
async def logout_all(caller: Caller, database: Database) -> Response:
    """Revoke every refresh token of the caller (all devices). Access tokens already issued
    stay valid until they expire (``access_token_minutes``)."""
    async with database.begin() as conn:
        revoked = await revoke_user(conn, caller.user_id)
        await record(
            conn, caller.tenant_id, caller.user_id, "logout_all", "ok", "user", caller.user_id,
            {"revoked": revoked},
        )  # fmt: skip
    return Response(status_code=204)


@router.get("/me", response_model=Me, summary="The signed-in user")
async def me(caller: Caller, database: Database) -> Me:
    """The caller's id, email, role and organisation."""
    async with database.connect() as conn:
        row = (
            await conn.execute(
                select(users.c.id, users.c.email, users.c.role, tenants.c.id, tenants.c.name)
                .join(tenants, tenants.c.id == users.c.tenant_id)
                .where(users.c.id == caller.user_id, users.c.tenant_id == caller.tenant_id)
            )
        ).first()
    if row is None:
        raise Problem(401, "the access token is invalid or expired: refresh it or sign in again")
    return Me(
        id=row[0],
        email=row[1],
        role=Role(row[2]),
        organisation=Organisation(id=row[3], name=row[4]),
    )
