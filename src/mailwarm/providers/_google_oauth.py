"""Google OAuth access tokens for one account: the refresh-token grant, done with httpx.

google-auth's async path needs aiohttp (or private modules), so the grant is a plain form POST
to ``https://oauth2.googleapis.com/token`` (https://developers.google.com/identity/protocols/
oauth2/web-server#offline). Tokens are refreshed shortly before they expire and once after a
401; one :class:`asyncio.Lock` makes concurrent calls share a single refresh. New tokens go
to :attr:`ProviderContext.on_credentials` so storage keeps them. Nothing here ever puts a
token or the client secret into a message, a log line or a repr.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from mailwarm._errors import (
    AccountMisconfigured,
    AuthExpired,
    TransientProviderError,
)
from mailwarm._models import Credentials
from mailwarm.providers._context import OAuthApp, ProviderContext

__all__ = ["GMAIL_SCOPES", "TOKEN_URL", "GoogleTokens"]

log = logging.getLogger("mailwarm.providers.gmail")

TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 (an endpoint, not a secret)

# Scopes that allow everything the provider does (send, read metadata, change labels):
# gmail.modify, or full access (https://developers.google.com/gmail/api/auth/scopes).
GMAIL_SCOPES = frozenset(
    {"https://www.googleapis.com/auth/gmail.modify", "https://mail.google.com/"}
)

# Google access tokens last an hour (``expires_in`` 3599); refreshing a few minutes early
# keeps a slow request from reaching Google with a token that expired on the way.
REFRESH_MARGIN = timedelta(minutes=5)


def _describe(response: httpx.Response) -> tuple[str, str]:
    """The ``error`` code and a short ``error_description`` of an RFC 6749 section 5.2 reply."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    error = body.get("error")
    description = body.get("error_description")
    return (
        error if isinstance(error, str) else "",
        description[:200] if isinstance(description, str) else "",
    )


class GoogleTokens:
    """Valid access tokens for one Google account, refreshed as needed.

    ``credentials`` holds the current tokens; ``app`` is the operator's OAuth client (needed
    only when there is a refresh token); ``http`` returns the provider's shared client.
    ``granted_scopes`` is what Google says the token may
    do, from the credentials or the last token response.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        app: OAuthApp | None,
        context: ProviderContext,
        http: Callable[[], httpx.AsyncClient],
        provider: str,
        margin: timedelta = REFRESH_MARGIN,
    ) -> None:
        self.credentials = credentials
        self.app = app
        self.context = context
        self.http = http
        self.provider = provider
        self.margin = margin
        self.refreshes = 0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<GoogleTokens account={self.credentials.account_id} refreshes={self.refreshes}>"

    @property
    def granted_scopes(self) -> frozenset[str]:
        """The scopes granted to the token, as far as known (empty when unknown)."""
        return frozenset(self.credentials.scopes)

    def _current(self) -> str | None:
        token = self.credentials.access_token
        if token is None:
            return None
        expires = self.credentials.token_expires_at
        if expires is not None and expires - self.margin <= self.context.clock.now():
            return None
        return token.get_secret_value()

    async def token(self) -> str:
        """A usable access token: the stored one, or a new one if it is missing or expiring."""
        current = self._current()
        if current is not None:
            return current
        async with self._lock:
            current = self._current()  # another task may have refreshed while we waited
            if current is not None:
                return current
            return await self._refresh()

    async def refresh_after_rejection(self, rejected: str) -> str:
        """A new token after Google answered 401 to ``rejected``; shared between the calls
        that failed with the same token, so a burst of 401s costs one refresh."""
        async with self._lock:
            token = self.credentials.access_token
            if token is not None and token.get_secret_value() != rejected:
                return token.get_secret_value()
            return await self._refresh()

    async def force_refresh(self) -> str:
        """Refresh now (``check()`` uses it to learn the granted scopes)."""
        async with self._lock:
            return await self._refresh()

    def _auth_error(self, message: str) -> AuthExpired:
        return AuthExpired(message, provider=self.provider, account_id=self.credentials.account_id)

    async def _refresh(self) -> str:
        refresh_token = self.credentials.refresh_token
        if refresh_token is None or self.app is None:
            raise self._auth_error(
                "the Google access token expired or was rejected and there is no refresh "
                "token to renew it: reconnect the account"
            )
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.get_secret_value(),
            "client_id": self.app.client_id,
        }
        if self.app.client_secret is not None:
            form["client_secret"] = self.app.client_secret.get_secret_value()
        try:
            response = await self.http().post(TOKEN_URL, data=form)
        except httpx.HTTPError as exc:
            # A refresh is idempotent: whatever happened, the next attempt may simply retry.
            raise TransientProviderError(
                f"could not reach Google's token endpoint ({type(exc).__name__})",
                provider=self.provider,
                account_id=self.credentials.account_id,
            ) from None
        if response.status_code != 200:
            raise self._refresh_error(response)
        try:
            body: Any = response.json()
            access = body["access_token"]
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise TransientProviderError(
                "Google's token endpoint sent an unreadable answer",
                provider=self.provider,
                account_id=self.credentials.account_id,
            ) from None
        if not isinstance(access, str) or not access:
            raise TransientProviderError(
                "Google's token endpoint sent no access token",
                provider=self.provider,
                account_id=self.credentials.account_id,
            )
        await self._store(body, access, self.context.clock.now() + timedelta(seconds=lifetime))
        return access

    def _refresh_error(self, response: httpx.Response) -> Exception:
        error, description = _describe(response)
        detail = f"{error}: {description}" if description else error or str(response.status_code)
        if error == "invalid_grant":
            # Revoked, expired (an app still in "Testing" issues 7-day refresh tokens), over
            # the 100-tokens-per-client limit, or a password change: only the user can fix it.
            return self._auth_error(
                f"Google refused the refresh token ({detail}): the grant was revoked or "
                "expired; reconnect the account to grant access again"
            )
        if error in ("invalid_client", "unauthorized_client"):
            return AccountMisconfigured(
                f"Google rejected the OAuth client {self.app.client_id if self.app else ''!r} "
                f'({detail}): check the client id and secret of the "google" OAuth app',
                provider=self.provider,
                account_id=self.credentials.account_id,
            )
        if response.status_code == 429 or response.status_code >= 500:
            return TransientProviderError(
                f"Google's token endpoint answered {response.status_code}",
                provider=self.provider,
                account_id=self.credentials.account_id,
            )
        return self._auth_error(
            f"Google's token endpoint refused the refresh ({detail}): reconnect the account"
        )

    async def _store(self, body: dict[str, Any], access: str, expires_at: datetime) -> None:
        update: dict[str, Any] = {
            "access_token": SecretStr(access),
            "token_expires_at": expires_at,
        }
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated:
            update["refresh_token"] = SecretStr(rotated)  # rare for Google, but keep it if so
        scope = body.get("scope")
        if isinstance(scope, str) and scope.strip():
            update["scopes"] = scope.split()
        self.credentials = self.credentials.model_copy(update=update)
        self.refreshes += 1
        log.debug("refreshed the Google access token of account %s", self.credentials.account_id)
        try:
            await self.context.on_credentials(self.credentials)
        except Exception as exc:
            # The new token works in memory either way; losing it only costs a refresh later.
            log.warning(
                "could not store the refreshed credentials of account %s (%s)",
                self.credentials.account_id,
                type(exc).__name__,
            )
