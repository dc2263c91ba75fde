"""The ``users`` routes (the people of an organisation) and ``GET /audit``.

Every query is scoped to the caller's organisation: the id of another organisation's user
answers 404, exactly like an id that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailwarm.server._audit import record
from mailwarm.server._deps import Database, Settings, require
from mailwarm.server._idempotency import Mutating
from mailwarm.server._jwt import Principal
from mailwarm.server._passwords import hash_password
from mailwarm.server._problems import Problem
from mailwarm.server._roles import Permission, Role, allowed
from mailwarm.server._schemas import Cursor, not_null, reject_null
from mailwarm.server._sessions import revoke_user, wire_principal_check
from mailwarm.storage._schema import audit_log, refresh_tokens, users

__all__ = ["router"]

router = APIRouter(tags=["users"], dependencies=[Depends(wire_principal_check)])

Reader = Annotated[Principal, Depends(require(Permission.READ))]
Manager = Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]
Auditor = Annotated[Principal, Depends(require(Permission.READ_AUDIT))]

RANK = {Role.VIEWER: 0, Role.MANAGER: 1, Role.ADMIN: 2, Role.OWNER: 3}
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
NO_SUCH_USER = "no such user"
MIN_PASSWORD = 12


class _Body(BaseModel):
    # Unknown fields, and so privileged ones (tenant_id, password_hash, ...), are refused.
    model_config = ConfigDict(extra="forbid")


class User(BaseModel):
    """A user of the caller's organisation (never the password hash)."""

    id: str
    email: str
    role: Role
    disabled: bool
    created_at: datetime


class UserList(BaseModel):
    """The organisation's users, oldest first."""

    items: list[User]


class NewUser(_Body):
    """An invitation: the email, the role and an initial password that the inviter passes
    on to the new user (who signs in with it)."""

    email: str = Field(max_length=320, pattern=EMAIL_PATTERN)
    role: Role = Role.VIEWER
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024)


class UserChange(_Body):
    """A new role, or disabling / enabling the user (an empty change leaves the user as is)."""

    role: Role | None = Field(default=None, json_schema_extra=not_null)
    disabled: StrictBool | None = Field(default=None, json_schema_extra=not_null)

    _no_nulls = field_validator("role", "disabled", mode="before")(reject_null)


class AuditEntry(BaseModel):
    """One audited event."""

    id: int
    at: datetime
    actor: str
    action: str
    outcome: str | None
    target_type: str | None
    target_id: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    """Events, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[AuditEntry]
    next_cursor: str | None


def _user(row: Any) -> User:
    return User(
        id=row.id,
        email=row.email,
        role=Role(row.role),
        disabled=bool(row.disabled),
        created_at=row.created_at,
    )


_COLUMNS = (users.c.id, users.c.email, users.c.role, users.c.disabled, users.c.created_at)


async def _target(conn: AsyncConnection, caller: Principal, user_id: str) -> Any:
    row = (
        await conn.execute(
            select(*_COLUMNS)
            .where(users.c.id == user_id, users.c.tenant_id == caller.tenant_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise Problem(404, NO_SUCH_USER)
    return row


async def _keep_an_owner(conn: AsyncConnection, tenant_id: str, leaving: str) -> None:
    others = (
        await conn.execute(
            select(users.c.id)
            .where(
                users.c.tenant_id == tenant_id,
                users.c.role == Role.OWNER.value,
                users.c.disabled.is_(False),
                users.c.id != leaving,
            )
            .with_for_update()
        )
    ).all()
    if not others:
        raise Problem(409, "an organisation needs an active owner: make someone else owner first")


def _owners_only(caller: Principal) -> None:
    if not allowed(caller.role, Permission.TRANSFER_OWNERSHIP):
        raise Problem(403, "only an owner may make, change or remove owners")


async def _denied(
    database: AsyncEngine, caller: Principal, action: str, target: str | None, exc: Problem
) -> None:
    await record(
        database,
        caller.tenant_id,
        caller.user_id,
        action,
        "denied",
        "user",
        target,
        {"status": exc.status, "reason": exc.detail},
    )


@router.get("/users", response_model=UserList, summary="The organisation's users")
async def list_users(caller: Reader, database: Database) -> UserList:
    """Every user of the caller's organisation."""
    async with database.connect() as conn:
        rows = (
            await conn.execute(
                select(*_COLUMNS)
                .where(users.c.tenant_id == caller.tenant_id)
                .order_by(users.c.created_at, users.c.id)
            )
        ).all()
    return UserList(items=[_user(r) for r in rows])


@router.post("/users", status_code=201, response_model=User, summary="Invite a user")
async def create_user(
    body: NewUser, caller: Manager, database: Database, mutation: Mutating
) -> Response:
    """Add a user to the caller's organisation with an initial password (owners and
    admins; only owners may add owners). 409 if the email is taken."""

    async def act() -> Response:
        user = await _create_user(body, caller, database)
        return JSONResponse(jsonable_encoder(user), status_code=201)

    return await mutation.once(act)


async def _create_user(body: NewUser, caller: Principal, database: AsyncEngine) -> User:
    """Add a user to the caller's organisation with an initial password (owners and
    admins; only owners may add owners). 409 if the email is taken."""
    email = body.email.strip().lower()
    try:
        if body.role is Role.OWNER:
            _owners_only(caller)
        hashed = await hash_password(body.password)
        user_id = uuid.uuid4().hex
        try:
            async with database.begin() as conn:
                taken = await conn.scalar(
                    select(users.c.id).where(func.lower(users.c.email) == email)
                )
                if taken is not None:
                    raise Problem(409, "a user with this email already exists")
                await conn.execute(
                    insert(users).values(
                        id=user_id,
                        tenant_id=caller.tenant_id,
                        email=email,
                        password_hash=hashed,
                        role=body.role.value,
                        disabled=False,
                    )
                )
                await record(
                    conn, caller.tenant_id, caller.user_id, "user_create", "ok", "user", user_id,
                    {"email": email, "role": body.role.value},
                )  # fmt: skip
                row = (await conn.execute(select(*_COLUMNS).where(users.c.id == user_id))).one()
        except IntegrityError:
            raise Problem(409, "a user with this email already exists") from None
    except Problem as exc:
        await _denied(database, caller, "user_create", None, exc)
        raise
    return _user(row)


@router.patch("/users/{user_id}", response_model=User, summary="Change a user's role or state")
async def change_user(
    user_id: str, body: UserChange, caller: Manager, database: Database, mutation: Mutating
) -> Response:
    """Change the role or disable / enable a user. Only owners may make, change or remove
    owners; nobody raises their own role; the last active owner stays. Disabling signs the
    user out everywhere at once."""

    async def act() -> Response:
        return JSONResponse(jsonable_encoder(await _change_user(user_id, body, caller, database)))

    return await mutation.once(act)


async def _change_user(
    user_id: str, body: UserChange, caller: Principal, database: AsyncEngine
) -> User:
    """Change the role or disable / enable a user. Only owners may make, change or remove
    owners; nobody raises their own role; the last active owner stays. Disabling signs the
    user out everywhere at once."""
    try:
        async with database.begin() as conn:
            target = await _target(conn, caller, user_id)
            old_role, was_disabled = Role(target.role), bool(target.disabled)
            new_role = body.role or old_role
            disabled = was_disabled if body.disabled is None else body.disabled
            if Role.OWNER in (old_role, new_role):
                _owners_only(caller)
            if target.id == caller.user_id and RANK[new_role] > RANK[caller.role]:
                raise Problem(403, "you cannot raise your own role")
            if (
                old_role is Role.OWNER
                and not was_disabled
                and (new_role is not Role.OWNER or disabled)
            ):
                await _keep_an_owner(conn, caller.tenant_id, target.id)
            await conn.execute(
                update(users)
                .where(users.c.id == target.id, users.c.tenant_id == caller.tenant_id)
                .values(role=new_role.value, disabled=disabled)
            )
            revoked = await revoke_user(conn, target.id) if disabled and not was_disabled else 0
            changes: dict[str, Any] = {}
            if new_role is not old_role:
                changes["role"] = [old_role.value, new_role.value]
            if disabled != was_disabled:
                changes["disabled"] = [was_disabled, disabled]
            await record(
                conn, caller.tenant_id, caller.user_id, "user_update", "ok", "user", target.id,
                {"changes": changes, "sessions_revoked": revoked},
            )  # fmt: skip
            row = (await conn.execute(select(*_COLUMNS).where(users.c.id == target.id))).one()
    except Problem as exc:
        await _denied(database, caller, "user_update", user_id, exc)
        raise
    return _user(row)


@router.delete("/users/{user_id}", status_code=204, summary="Remove a user")
async def delete_user(
    user_id: str, caller: Manager, database: Database, mutation: Mutating
) -> Response:
    """Remove a user and their sessions (only owners remove owners; not the last one)."""
    return await mutation.once(lambda: _delete_user(user_id, caller, database))


async def _delete_user(user_id: str, caller: Principal, database: AsyncEngine) -> Response:
    """Remove a user and their sessions (only owners remove owners; not the last one)."""
    try:
        async with database.begin() as conn:
            target = await _target(conn, caller, user_id)
            if Role(target.role) is Role.OWNER:
                _owners_only(caller)
                if not target.disabled:
                    await _keep_an_owner(conn, caller.tenant_id, target.id)
            await conn.execute(delete(refresh_tokens).where(refresh_tokens.c.user_id == target.id))
            await conn.execute(
                delete(users).where(users.c.id == target.id, users.c.tenant_id == caller.tenant_id)
            )
            await record(
                conn, caller.tenant_id, caller.user_id, "user_delete", "ok", "user", target.id,
                {"email": target.email, "role": target.role},
            )  # fmt: skip
    except Problem as exc:
        await _denied(database, caller, "user_delete", user_id, exc)
        raise
    return Response(status_code=204)


# -- audit -------------------------------------------------------------------------------------


def _cursor(at: datetime, entry_id: int) -> str:
    raw = json.dumps([at.isoformat(), entry_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, entry_id = json.loads(raw)
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None or not isinstance(entry_id, int):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise Problem(
            422,
            "cursor: not a cursor from a previous page",
            title="Invalid request",
            errors=[{"field": "cursor", "message": "not a cursor from a previous page"}],
        ) from None
    return parsed, entry_id


@router.get("/audit", response_model=AuditPage, summary="The organisation's audit log")
async def audit(
    caller: Auditor,
    database: Database,
    settings: Settings,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="Events per page (at most the server's maximum).")
    ] = 50,
    cursor: Cursor = None,
) -> AuditPage:
    """Audited events of the caller's organisation, newest first (owners and admins)."""
    limit = min(limit, settings.max_page_size)
    query = select(audit_log).where(audit_log.c.tenant_id == caller.tenant_id)
    if cursor is not None:
        at, entry_id = _parse_cursor(cursor)
        query = query.where(
            or_(audit_log.c.at < at, and_(audit_log.c.at == at, audit_log.c.id < entry_id))
        )
    query = query.order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(limit + 1)
    async with database.connect() as conn:
        rows = (await conn.execute(query)).all()
    items = []
    for row in rows[:limit]:
        detail = dict(row.detail or {})
        outcome = detail.pop("outcome", None)
        items.append(
            AuditEntry(
                id=row.id,
                at=row.at,
                actor=row.actor,
                action=row.action,
                outcome=outcome,
                target_type=row.target_type,
                target_id=row.target_id,
                detail=detail,
            )
        )
    last = rows[limit - 1] if len(rows) > limit else None
    return AuditPage(items=items, next_cursor=_cursor(last.at, last.id) if last else None)
