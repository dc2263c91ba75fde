"""The ``accounts`` routes: mailboxes of the caller's organisation, their warmup, connection
check, credentials and health (docs/server/api.md).

Every query is scoped to the caller's tenant: an id of another organisation answers exactly
like a missing one (404). New accounts start paused ("warmup not started") until
``POST /accounts/{id}/warmup/start``; status changes only through the warmup routes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy import Select, and_, or_, select, tuple_, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailwarm._errors import ConfigurationError
from mailwarm._models import AccountStatus, Credentials, EmailAccount
from mailwarm.engine._health import HealthReport
from mailwarm.poolfile import SECRET_REFS, parse_account
from mailwarm.providers import ProviderContext, create_provider, provider_class
from mailwarm.server._deps import Database, Settings, require, services
from mailwarm.server._idempotency import Mutating, Outcome
from mailwarm.server._jwt import Principal
from mailwarm.server._oauth import oauth_config
from mailwarm.server._problems import Problem
from mailwarm.server._roles import Permission, allowed
from mailwarm.server._schemas import (
    PRIVILEGED_FIELDS,
    AccountCreate,
    AccountOut,
    AccountPage,
    AccountUpdate,
    BulkIds,
    BulkResult,
    CheckOut,
    CredentialsIn,
    CredentialsSummary,
    Cursor,
    PageSize,
    WindowOut,
    bad_cursor,
    decode_cursor,
    encode_cursor,
)
from mailwarm.storage import Accounts, Keyring
from mailwarm.storage._accounts import SECRET_FIELDS
from mailwarm.storage._analytics import Analytics
from mailwarm.storage._rows import account_from_row, account_row
from mailwarm.storage._schema import credentials, email_accounts

__all__ = [
    "account_or_404",
    "cursor_datetime",
    "invalid",
    "keyring",
    "not_found",
    "page_limit",
    "router",
]

router = APIRouter(tags=["accounts"])

NOT_STARTED = "warmup not started: POST /accounts/{id}/warmup/start"
CHECK_TIMEOUT = 90.0  # seconds for a whole connection check
WarmupAction = Literal["start", "pause", "resume"]


ReadCaller = Annotated[Principal, Depends(require(Permission.READ))]
AccountManager = Annotated[Principal, Depends(require(Permission.MANAGE_ACCOUNTS))]


# -- shared helpers (tasks and activities use them too) -----------------------------------------


def not_found(account_id: str) -> Problem:
    """The one answer for an account that is missing or belongs to another organisation."""
    return Problem(404, f"no account {account_id!r}")


def invalid(field: str, message: str) -> Problem:
    """A 422 naming ``field``, shaped like the framework's validation errors."""
    return Problem(
        422,
        f"{field}: {message}",
        title="Invalid request",
        errors=[{"field": field, "message": message}],
    )


def page_limit(limit: int | None, maximum: int, default: int = 50) -> int:
    """The page size asked for (default ``default``), at most ``maximum``."""
    if limit is None:
        return min(default, maximum)
    return min(limit, maximum)  # above the server's maximum: the maximum


def cursor_datetime(text: str) -> datetime:
    """A time read from a cursor (a 422 problem when it is none)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad_cursor() from None
    if moment.tzinfo is None:
        raise bad_cursor()
    return moment


def keyring(request: Request) -> Keyring:
    """The master keys (from ``MAILWARM_MASTER_KEYS`` / ``_FILE``, read once and kept in
    ``services.extras["keyring"]``; a host app or test may put its own there)."""
    extras = services(request).extras
    found = extras.get("keyring")
    if found is None:
        try:
            found = Keyring.from_env()
        except ConfigurationError as exc:
            raise Problem(503, f"the server cannot store or read mailbox secrets: {exc}") from None
        extras["keyring"] = found
    assert isinstance(found, Keyring)
    return found


async def account_or_404(conn: AsyncConnection, tenant_id: str, account_id: str) -> Row[Any]:
    """The caller's account ``account_id`` (with its credentials summary), or 404."""
    query = _account_query(tenant_id).where(email_accounts.c.id == account_id)
    row: Row[Any] | None = (await conn.execute(query)).first()
    if row is None:
        raise not_found(account_id)
    return row


_CREDENTIAL_COLUMNS = [
    credentials.c.kind.label("cred_kind"),
    credentials.c.username.label("cred_username"),
    credentials.c.updated_at.label("cred_updated_at"),
    *(
        credentials.c[column].isnot(None).label(f"has_{name}")
        for name, column in SECRET_FIELDS.items()
    ),
]


def _account_query(tenant_id: str) -> Select[Any]:
    joined = email_accounts.outerjoin(credentials, credentials.c.account_id == email_accounts.c.id)
    return (
        select(email_accounts, *_CREDENTIAL_COLUMNS)
        .select_from(joined)
        .where(email_accounts.c.tenant_id == tenant_id)
    )


def account_out(row: Row[Any]) -> AccountOut:
    """The API's view of an account row (secrets: only which are stored)."""
    account = account_from_row(row)
    values = row._mapping
    summary = None
    if values["cred_kind"] is not None:
        summary = CredentialsSummary(
            kind=values["cred_kind"],
            username=values["cred_username"],
            stored=[name for name in SECRET_FIELDS if values[f"has_{name}"]],
            updated_at=values["cred_updated_at"],
        )
    return AccountOut(
        id=account.id,
        address=account.address,
        display_name=account.display_name,
        provider=account.provider,
        status=account.status.value,
        status_reason=account.status_reason,
        timezone=account.timezone,
        window=WindowOut(
            start=account.window.start,
            end=account.window.end,
            weekdays=sorted(account.window.weekdays),
        ),
        daily_cap=account.daily_cap,
        strategy=account.strategy,
        pool=account.pool,
        organisation=account.organisation,
        tags=list(account.tags),
        warmup_started_on=account.warmup_started_on,
        connection=dict(values["connection"] or {}),
        owner_id=values["owner_id"],
        credentials=summary,
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )


def _json(model: BaseModel) -> Any:
    return model.model_dump(mode="json")


async def _current(engine: AsyncEngine, tenant_id: str, account_id: str) -> AccountOut:
    async with engine.connect() as conn:
        return account_out(await account_or_404(conn, tenant_id, account_id))


def _accounts(request: Request, engine: AsyncEngine, caller: Principal) -> Accounts:
    return Accounts(engine, keyring(request), tenant_id=caller.tenant_id, actor=caller.user_id)


def _validation_problem(exc: ValidationError, prefix: Sequence[str] = ()) -> Problem:
    errors = [
        {
            "field": ".".join([*prefix, *(str(p) for p in e["loc"])]) or "body",
            "message": e["msg"],
        }
        for e in exc.errors()
    ]
    first = errors[0]
    return Problem(
        422, f"{first['field']}: {first['message']}", title="Invalid request", errors=errors
    )


# -- list, read ----------------------------------------------------------------------------------


@router.get("/accounts", response_model=AccountPage, summary="List accounts")
async def list_accounts(
    caller: ReadCaller,
    database: Database,
    settings: Settings,
    status: AccountStatus | None = None,
    pool: str | None = None,
    provider: str | None = None,
    limit: PageSize = None,
    cursor: Cursor = None,
) -> AccountPage:
    """The organisation's accounts by address, ``limit`` per page (keyset cursor)."""
    size = page_limit(limit, settings.max_page_size)
    query = _account_query(caller.tenant_id)
    c = email_accounts.c
    if status is not None:
        query = query.where(c.status == status.value)
    if pool is not None:
        query = query.where(c.pool == pool)
    if provider is not None:
        query = query.where(c.provider == provider)
    if cursor is not None:
        address, account_id = decode_cursor(cursor, "accounts", 2)
        query = query.where(tuple_(c.address, c.id) > tuple_(address, account_id))
    query = query.order_by(c.address, c.id).limit(size + 1)
    async with database.connect() as conn:
        rows = (await conn.execute(query)).all()
    items = [account_out(r) for r in rows[:size]]
    more = len(rows) > size
    last = items[-1] if items else None
    return AccountPage(
        items=items,
        next_cursor=encode_cursor("accounts", last.address, last.id) if more and last else None,
    )


@router.get("/accounts/{account_id}", response_model=AccountOut, summary="Get an account")
async def get_account(account_id: str, caller: ReadCaller, database: Database) -> AccountOut:
    """One account of the organisation."""
    return await _current(database, caller.tenant_id, account_id)


@router.get("/accounts/{account_id}/health", response_model=HealthReport, summary="Account health")
async def account_health(account_id: str, caller: ReadCaller, database: Database) -> HealthReport:
    """State, score (formula ``mailwarm-health/1``), its inputs and reasons, from the
    account's activities over the health window."""
    async with database.connect() as conn:
        await account_or_404(conn, caller.tenant_id, account_id)
    reports = await Analytics(database, tenant_id=caller.tenant_id).health(account_id=account_id)
    return reports[0]


# -- create, change, remove ---------------------------------------------------------------------

_ACCOUNT_FIELDS = ("display_name", "timezone", "daily_cap", "strategy", "organisation", "tags")
_SECRETS = ("password", "access_token", "refresh_token")


def _connection(body: AccountCreate) -> dict[str, Any]:
    extras = dict(body.model_extra or {})
    for key in sorted(extras):
        if key in PRIVILEGED_FIELDS:
            raise invalid(key, "may not be set by a request")
        if key in SECRET_REFS or key == "ca_file" or key.endswith(("_env", "_file")):
            raise invalid(
                key,
                "server environment variables and files are not readable through the API: "
                "give the secret itself (password, refresh_token, access_token)",
            )
    try:
        model: type[BaseModel] | None = getattr(
            provider_class(body.provider), "settings_model", None
        )
    except (ConfigurationError, ImportError) as exc:
        raise invalid("provider", str(exc)) from None
    if model is not None:
        try:
            model.model_validate(extras)
        except ValidationError as exc:
            raise _validation_problem(exc) from None
    return extras


@router.post("/accounts", response_model=AccountOut, status_code=201, summary="Add an account")
async def create_account(
    body: AccountCreate,
    request: Request,
    caller: AccountManager,
    database: Database,
    mutation: Mutating,
) -> Response:
    """Store a mailbox with its secrets (encrypted); it starts paused until warmup/start."""
    connection = _connection(body)
    secrets = {name: getattr(body, name) for name in _SECRETS if getattr(body, name) is not None}
    if not secrets:
        raise invalid("password", "give the mailbox password (or OAuth refresh_token)")

    async def act() -> Outcome:
        entry: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "address": body.address,
            "provider": body.provider,
            **{f: getattr(body, f) for f in _ACCOUNT_FIELDS if getattr(body, f) is not None},
            **connection,
        }
        if body.window is not None:
            entry["window"] = body.window.as_dict()
        environ: dict[str, str] = {}
        for name, value in secrets.items():
            assert isinstance(value, SecretStr)
            entry[f"{name}_env"] = f"MAILWARM_API_{name.upper()}"
            environ[f"MAILWARM_API_{name.upper()}"] = value.get_secret_value()
        parsed = parse_account(entry, source="request", environ=environ)
        account = parsed.account.model_copy(
            update={
                "pool": body.pool,
                "status": AccountStatus.PAUSED,
                "status_reason": NOT_STARTED,
            }
        )
        accounts = _accounts(request, database, caller)
        try:
            await accounts.add(account, parsed.credentials, parsed.connection)
        except ConfigurationError:
            raise Problem(
                409, f"an account {account.address} exists already in your organisation"
            ) from None
        async with database.begin() as conn:
            await conn.execute(
                update(email_accounts)
                .where(email_accounts.c.id == account.id)
                .values(owner_id=caller.user_id)
            )
        out = await _current(database, caller.tenant_id, account.id)
        return Outcome(201, _json(out), target_id=account.id, detail={"address": out.address})

    return await mutation.run("account.create", act, target_type="email_account")


@router.patch("/accounts/{account_id}", response_model=AccountOut, summary="Change an account")
async def update_account(
    account_id: str,
    body: AccountUpdate,
    request: Request,
    caller: AccountManager,
    database: Database,
    mutation: Mutating,
) -> Response:
    """Daily limit, ramp (strategy), window and weekdays, pool, tags... and the pool's reply
    rate. Omitted fields stay as they are."""
    given = body.model_fields_set
    if "reply_rate" in given and not allowed(caller.role, Permission.MANAGE_SETTINGS):
        raise Problem(
            403,
            f"your role ({caller.role.value}) may not manage settings: reply_rate is a "
            "setting of the account's pool",
        )

    async def act() -> Outcome:
        async with database.connect() as conn:
            row = await account_or_404(conn, caller.tenant_id, account_id)
        account = account_from_row(row)
        data = account.model_dump()
        for name in ("display_name", "timezone", "daily_cap", "organisation", "tags", "pool"):
            if name in given:
                value = getattr(body, name)
                if value is None and name in ("timezone", "daily_cap", "tags", "pool"):
                    raise invalid(name, "may not be null")
                data[name] = value
        if "strategy" in given:
            data["strategy"] = body.strategy
        window = dict(data["window"])
        if body.window is not None:
            window.update(body.window.as_dict())
        if body.weekdays is not None:
            window["weekdays"] = body.weekdays
        data["window"] = window
        try:
            changed = EmailAccount.model_validate(data)
        except ValidationError as exc:
            raise _validation_problem(exc) from None
        values = account_row(changed, caller.tenant_id)
        for key in ("id", "tenant_id", "status", "status_reason", "connection", "address"):
            values.pop(key)
        async with database.begin() as conn:
            await conn.execute(
                update(email_accounts)
                .where(
                    email_accounts.c.id == account_id,
                    email_accounts.c.tenant_id == caller.tenant_id,
                )
                .values(**values)
            )
        if body.reply_rate is not None:
            accounts = Accounts(database, tenant_id=caller.tenant_id, actor=caller.user_id)
            pool = await accounts.pool_settings(changed.pool)
            engagement = pool.engagement.model_copy(update={"reply_rate": body.reply_rate})
            await accounts.save_pool_settings(pool.model_copy(update={"engagement": engagement}))
        out = await _current(database, caller.tenant_id, account_id)
        return Outcome(200, _json(out), detail={"fields": sorted(given)})

    return await mutation.run(
        "account.update", act, target_type="email_account", target_id=account_id
    )


@router.delete("/accounts/{account_id}", status_code=204, summary="Remove an account")
async def delete_account(
    account_id: str,
    request: Request,
    caller: AccountManager,
    database: Database,
    mutation: Mutating,
) -> Response:
    """Delete an account with its credentials, tasks and activities."""

    async def act() -> Outcome:
        async with database.connect() as conn:
            await account_or_404(conn, caller.tenant_id, account_id)
        accounts = Accounts(database, tenant_id=caller.tenant_id, actor=caller.user_id)
        await accounts.remove(account_id)
        return Outcome(204)

    return await mutation.run(
        "account.delete", act, target_type="email_account", target_id=account_id
    )


# -- warmup --------------------------------------------------------------------------------------


async def _set_warmup(
    engine: AsyncEngine, tenant_id: str, ids: Sequence[str], action: WarmupAction
) -> list[AccountOut]:
    unique = list(dict.fromkeys(ids))
    c = email_accounts.c
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(c.id, c.warmup_started_on).where(c.tenant_id == tenant_id, c.id.in_(unique))
            )
        ).all()
        found = {r.id: r.warmup_started_on for r in rows}
        for account_id in unique:
            if account_id not in found:
                raise not_found(account_id)
        if action == "resume":
            for account_id in unique:
                if found[account_id] is None:
                    raise Problem(
                        409,
                        f"account {account_id!r}: warmup was never started: "
                        "POST /accounts/{id}/warmup/start",
                    )
        scope = and_(c.tenant_id == tenant_id, c.id.in_(unique))
        if action == "pause":
            await conn.execute(
                update(email_accounts)
                .where(scope)
                .values(status=AccountStatus.PAUSED.value, status_reason="paused by a user")
            )
        else:
            await conn.execute(
                update(email_accounts)
                .where(scope)
                .values(status=AccountStatus.ACTIVE.value, status_reason=None)
            )
            await conn.execute(
                update(email_accounts)
                .where(scope, or_(c.warmup_started_on.is_(None)))
                .values(warmup_started_on=datetime.now(UTC).date())
            )
        result = (await conn.execute(_account_query(tenant_id).where(c.id.in_(unique)))).all()
    by_id = {r.id: account_out(r) for r in result}
    return [by_id[i] for i in unique]


@router.post(
    "/accounts/warmup/{action}", response_model=BulkResult, summary="Start, pause or resume many"
)
async def bulk_warmup(
    action: WarmupAction,
    body: BulkIds,
    caller: AccountManager,
    database: Database,
    settings: Settings,
    mutation: Mutating,
) -> Response:
    """The same action on every listed account, all or none (404 when one is unknown)."""
    if len(body.ids) > settings.max_page_size:
        raise invalid("ids", f"at most {settings.max_page_size} ids at once")

    async def act() -> Outcome:
        items = await _set_warmup(database, caller.tenant_id, body.ids, action)
        return Outcome(200, _json(BulkResult(items=items)), detail={"ids": [i.id for i in items]})

    return await mutation.run(f"account.warmup.{action}", act, target_type="email_account")


@router.post(
    "/accounts/{account_id}/warmup/{action}",
    response_model=AccountOut,
    summary="Start, pause or resume warmup",
)
async def warmup(
    account_id: str,
    action: WarmupAction,
    caller: AccountManager,
    database: Database,
    mutation: Mutating,
) -> Response:
    """``start``: active from now on (the ramp's day 1 is the first start); ``pause``: no
    more sends; ``resume``: active again after a pause."""

    async def act() -> Outcome:
        [item] = await _set_warmup(database, caller.tenant_id, [account_id], action)
        return Outcome(200, _json(item), detail={"account_status": item.status})

    return await mutation.run(
        f"account.warmup.{action}", act, target_type="email_account", target_id=account_id
    )


# -- connection ----------------------------------------------------------------------------------


@router.post(
    "/accounts/{account_id}/check", response_model=CheckOut, summary="Check the connection"
)
async def check_account(
    account_id: str,
    request: Request,
    caller: AccountManager,
    database: Database,
    settings: Settings,
    mutation: Mutating,
) -> Response:
    """Log in with the stored credentials (SMTP and IMAP for ``smtp``) and say what to fix.
    Hosts that resolve to private, loopback or link-local addresses are refused unless the
    operator set ``MAILWARM_ALLOW_PRIVATE_HOSTS``."""

    async def act() -> Outcome:
        async with database.connect() as conn:
            row = await account_or_404(conn, caller.tenant_id, account_id)
        account = account_from_row(row)
        accounts = _accounts(request, database, caller)
        creds = await accounts.credentials(account_id)
        context = ProviderContext(
            allow_private_hosts=settings.allow_private_hosts,
            on_credentials=accounts.save_credentials,
            oauth=dict(oauth_config(services(request)).apps),  # to refresh OAuth tokens
        )
        try:
            provider = create_provider(account, creds, row.connection, context=context)
        except ConfigurationError as exc:
            # Stored settings that no longer fit, or a server not set up for the provider
            # (no OAuth app): the report says what to fix, like any failed login.
            out = CheckOut(ok=False, checks={}, problems=[str(exc)])
            return Outcome(200, _json(out), detail={"ok": False})
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                report = await provider.check()
        except TimeoutError:
            out = CheckOut(ok=False, checks={}, problems=["the check timed out"])
        else:
            out = CheckOut(ok=report.ok, checks=dict(report.checks), problems=list(report.problems))
        finally:
            await provider.aclose()
        return Outcome(200, _json(out), detail={"ok": out.ok})

    return await mutation.run(
        "account.check", act, target_type="email_account", target_id=account_id
    )


@router.put(
    "/accounts/{account_id}/credentials",
    response_model=AccountOut,
    summary="Replace the mailbox password",
)
async def put_credentials(
    account_id: str,
    body: CredentialsIn,
    request: Request,
    caller: AccountManager,
    database: Database,
    mutation: Mutating,
) -> Response:
    """Store a new SMTP/IMAP password (encrypted); the login name stays unless given."""

    async def act() -> Outcome:
        async with database.connect() as conn:
            row = await account_or_404(conn, caller.tenant_id, account_id)
        username = body.username or row.cred_username
        creds = Credentials(
            account_id=account_id, kind="password", username=username, password=body.password
        )
        accounts = _accounts(request, database, caller)
        await accounts.save_credentials(creds)
        out = await _current(database, caller.tenant_id, account_id)
        return Outcome(200, _json(out), detail={"kind": "password"})

    return await mutation.run(
        "account.credentials", act, target_type="email_account", target_id=account_id
    )
