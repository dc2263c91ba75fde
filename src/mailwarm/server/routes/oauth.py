"""The OAuth sign-in routes for ``gmail`` and ``graph`` accounts (docs/server/oauth.md).

``POST /accounts/{id}/oauth/start`` (manage accounts) answers the provider's sign-in URL with
a one-time state; the browser comes back to ``GET /oauth/callback/{provider}`` without a
bearer token: the state (bound to the organisation, user, account, provider and redirect URI)
is what makes the callback genuine. The tokens are stored encrypted and never answered.

Two routers: :data:`router` needs a signed-in caller (and counts against the API limit);
:data:`callback_router` is public and belongs in ``UNLIMITED``.
"""

from __future__ import annotations

import html
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailwarm._models import Credentials
from mailwarm.server import _oauth
from mailwarm.server._deps import Database, require, services
from mailwarm.server._idempotency import record_audit
from mailwarm.server._jwt import Principal
from mailwarm.server._problems import Problem
from mailwarm.server._roles import Permission, Role, allowed
from mailwarm.server.routes.accounts import account_or_404, keyring, not_found
from mailwarm.storage import Accounts
from mailwarm.storage._schema import credentials, users

__all__ = ["OAuthConnectedOut", "OAuthStartOut", "callback_router", "router"]

log = logging.getLogger("mailwarm.server.oauth")

router = APIRouter(tags=["accounts"])
callback_router = APIRouter(tags=["accounts"])

AccountManager = Annotated[Principal, Depends(require(Permission.MANAGE_ACCOUNTS))]


class OAuthStartOut(BaseModel):
    """Where to send the user's browser, and for how long the link is valid."""

    authorization_url: str
    state: str
    expires_in: int


class OAuthConnectedOut(BaseModel):
    """The account is connected: its OAuth tokens are stored (encrypted)."""

    connected: bool
    account_id: str
    provider: str
    scopes: list[str]


@router.post(
    "/accounts/{account_id}/oauth/start",
    response_model=OAuthStartOut,
    summary="Start an OAuth sign-in",
)
async def start_oauth(
    account_id: str, request: Request, caller: AccountManager, database: Database
) -> OAuthStartOut:
    """A Google (``gmail``) or Microsoft (``graph``) sign-in link for the account, with PKCE
    (S256) and a one-time state valid for 10 minutes. Open ``authorization_url`` in the
    mailbox owner's browser; the provider sends it back to ``/oauth/callback/{provider}``."""
    async with database.connect() as conn:
        row = await account_or_404(conn, caller.tenant_id, account_id)
    provider = _oauth.ACCOUNT_PROVIDERS.get(row.provider)
    if provider is None:
        # The request is fine; the account is of a kind that signs in with a password.
        raise Problem(
            409,
            f"OAuth sign-in is for gmail and graph accounts, not {row.provider}: "
            "PUT /accounts/{id}/credentials stores a password",
            title="Not an OAuth account",
        )
    config = _oauth.oauth_config(services(request))
    app = config.app(provider)
    redirect_to = _oauth.redirect_uri(config, provider)
    verifier = _oauth.new_verifier()
    state, _ = await _oauth.save_pending(
        database,
        keyring(request),
        tenant_id=caller.tenant_id,
        user_id=caller.user_id,
        account_id=account_id,
        provider=provider,
        redirect_to=redirect_to,
        verifier=verifier,
    )
    url = _oauth.authorization_url(
        app,
        provider,
        redirect_to=redirect_to,
        state=state,
        verifier=verifier,
        login_hint=row.address,
    )
    await record_audit(
        database,
        caller,
        "account.oauth.start",
        target_type="email_account",
        target_id=account_id,
        outcome="success",
        provider=provider,
    )
    return OAuthStartOut(
        authorization_url=url,
        state=state,
        expires_in=int(_oauth.STATE_TTL.total_seconds()),
    )


async def _signer(engine: AsyncEngine, pending: _oauth.PendingSignIn) -> Principal:
    """The user who started the sign-in, if they still may manage accounts (403 if not)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(users.c.role, users.c.disabled).where(
                    users.c.id == pending.user_id, users.c.tenant_id == pending.tenant_id
                )
            )
        ).first()
    if row is None or row.disabled:
        raise Problem(403, "the user who started this sign-in is no longer active")
    principal = Principal(pending.user_id, pending.tenant_id, Role(row.role))
    if not allowed(principal.role, Permission.MANAGE_ACCOUNTS):
        raise Problem(403, f"your role ({principal.role.value}) may not manage accounts")
    return principal


# The page a browser sees: no script, no style sheet, nothing loaded, and no Referer sent on
# (the callback's URL held the code and the state).
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - mailwarm</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:4em auto;padding:0 1em}}
h1{{font-size:1.4em}}</style></head>
<body><h1>{title}</h1><p>{message}</p><p>{next}</p></body></html>
"""
_NAMES = {"google": "Google", "microsoft": "Microsoft"}


def _wants_page(request: Request) -> bool:
    """A browser (its Accept header puts text/html first) gets a page; API clients JSON."""
    first = request.headers.get("accept", "").split(",")[0].split(";")[0].strip().lower()
    return first in {"text/html", "application/xhtml+xml"}


def _page(status: int, title: str, message: str, next_step: str) -> HTMLResponse:
    body = _PAGE.format(
        title=html.escape(title), message=html.escape(message), next=html.escape(next_step)
    )
    return HTMLResponse(body, status_code=status, headers=_PAGE_HEADERS)


@callback_router.get(
    "/oauth/callback/{provider}",
    response_model=OAuthConnectedOut,
    summary="OAuth sign-in callback",
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
)
async def oauth_callback(
    provider: str,
    request: Request,
    database: Database,
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> OAuthConnectedOut | HTMLResponse:
    """Where Google or Microsoft sends the browser back: takes the one-time ``state``,
    exchanges ``code`` (with the PKCE verifier) and stores the tokens, encrypted. A browser
    (``Accept: text/html``) gets a short page saying what happened; other clients get JSON,
    or a problem document."""
    if not _wants_page(request):
        return await _complete(provider, request, database, state, code, error)
    try:
        done = await _complete(provider, request, database, state, code, error)
    except Problem as exc:
        return _page(
            exc.status,
            "The mailbox was not connected",
            exc.detail,
            "Go back to mailwarm and connect the account again.",
        )
    name = _NAMES.get(done.provider, done.provider)
    return _page(
        200,
        "Mailbox connected",
        f"{done.address} is connected to mailwarm with {name}; its warmup can use it now.",
        "You can close this window.",
    )


class _Connected(OAuthConnectedOut):
    address: str = Field(exclude=True)


async def _complete(
    provider: str,
    request: Request,
    database: Database,
    state: str | None,
    code: str | None,
    error: str | None,
) -> _Connected:
    if provider not in _oauth.ACCOUNT_PROVIDERS.values():
        raise Problem(404, f"no OAuth provider {provider!r}: google or microsoft")
    if not state:
        raise Problem(400, "the sign-in answer has no state: start again")
    ring = keyring(request)
    pending = await _oauth.take_pending(database, ring, state)
    if pending.provider != provider:
        raise Problem(400, f"this sign-in was started for {pending.provider}, not {provider}")
    principal = await _signer(database, pending)
    action = "account.oauth.connect"
    where: dict[str, Any] = {"provider": provider}
    try:
        if error is not None:
            shown = _oauth.safe_error_code(error) or "error"
            raise Problem(
                400, f"the sign-in was cancelled or refused at {provider} ({shown}): start again"
            )
        if not code:
            raise Problem(400, "the sign-in answer has no code: start again")
        async with database.connect() as conn:
            row = await account_or_404(conn, pending.tenant_id, pending.account_id)
        if _oauth.ACCOUNT_PROVIDERS.get(row.provider) != provider:
            raise not_found(pending.account_id)
        config = _oauth.oauth_config(services(request))
        grant = await _oauth.exchange_code(
            config.app(provider),
            provider,
            code=code,
            redirect_to=pending.redirect_uri,
            verifier=pending.verifier,
            http=services(request).extras.get("oauth_http"),
        )
        _oauth.check_grant(provider, grant)
        creds = Credentials(
            account_id=pending.account_id,
            kind="oauth2",
            username=row.cred_username or row.address,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token,
            token_expires_at=grant.expires_at,
            scopes=grant.scopes,
        )
        accounts = Accounts(database, ring, tenant_id=pending.tenant_id, actor=pending.user_id)
        if row.cred_kind is None:
            async with database.begin() as conn:
                await conn.execute(insert(credentials).values(**accounts._encrypted(creds)))
        else:
            await accounts.save_credentials(creds)
    except Problem as exc:
        await record_audit(
            database,
            principal,
            action,
            target_type="email_account",
            target_id=pending.account_id,
            outcome="failure",
            status=exc.status,
            **where,
        )
        raise
    await record_audit(
        database,
        principal,
        action,
        target_type="email_account",
        target_id=pending.account_id,
        outcome="success",
        status=200,
        scopes=grant.scopes,
        **where,
    )
    log.info("account %s connected with %s", pending.account_id, provider)
    return _Connected(
        connected=True,
        account_id=pending.account_id,
        provider=provider,
        scopes=grant.scopes,
        address=row.address,
    )
