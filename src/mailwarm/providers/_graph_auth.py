"""Access tokens for one Microsoft account: msal in a worker thread, one call at a time.

msal is imported only here, lazily, when the first token is needed (``pip install
"mailwarm[graph]"`` provides it). Its serialised token cache lives in
``Credentials.token_cache``; whenever msal changes it (a refresh rotates the refresh token:
https://learn.microsoft.com/entra/identity-platform/refresh-tokens), the new credentials go
to ``ProviderContext.on_credentials`` so storage keeps them, encrypted.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from mailwarm._errors import AuthExpired, ProviderError, TransientProviderError
from mailwarm._extras import require
from mailwarm._models import Credentials, EmailAccount
from mailwarm.providers._context import OAuthApp, ProviderContext

if TYPE_CHECKING:
    from mailwarm.providers._msal import AccountTokens, Grant, TokenFailure

__all__ = ["GraphTokens"]

log = logging.getLogger(__name__)

# msal itself treats a cached token with under five minutes left as expired.
_EARLY = timedelta(minutes=5)


class GraphTokens:
    """Bearer tokens for one account. ``access_token()`` is cheap after the first call (the
    token is kept until five minutes before it expires); ``refresh(stale)`` forces a new one
    after a 401, once for any number of requests that saw the same stale token."""

    def __init__(
        self,
        account: EmailAccount,
        credentials: Credentials,
        app: OAuthApp,
        context: ProviderContext,
        *,
        provider: str,
        timeout: float = 30.0,
        msal_http_client: Any | None = None,
    ) -> None:
        self.account = account
        self.credentials = credentials
        self._app = app
        self._context = context
        self._provider = provider
        self._msal_http_client = msal_http_client
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._tokens: AccountTokens | None = None
        self._grant: Grant | None = None
        self._valid_until: datetime | None = None

    def __repr__(self) -> str:
        return f"<GraphTokens {self.account.address}>"

    @property
    def scopes(self) -> frozenset[str]:
        """What the current token allows (empty before the first token)."""
        return self._grant.scopes if self._grant is not None else frozenset()

    async def access_token(self) -> str:
        """A valid access token, from memory, msal's cache or a refresh."""
        async with self._lock:
            if self._grant is not None and self._fresh():
                return self._grant.access_token
            return (await self._acquire(force_refresh=False)).access_token

    async def refresh(self, stale: str) -> str:
        """A new token after Graph refused ``stale`` (401). If another request already
        replaced it, that newer token is returned without asking Entra ID again."""
        async with self._lock:
            if self._grant is not None and self._grant.access_token != stale:
                return self._grant.access_token
            return (await self._acquire(force_refresh=True)).access_token

    def _fresh(self) -> bool:
        return self._valid_until is not None and self._context.clock.now() < self._valid_until

    def _wire(self) -> AccountTokens:
        if self._tokens is None:
            require("msal", extra="graph")  # MissingExtra names the extra to install
            from mailwarm.providers._msal import AccountTokens

            secret = self._app.client_secret
            self._tokens = AccountTokens(
                client_id=self._app.client_id,
                client_secret=secret.get_secret_value() if secret is not None else "",
                tenant=self._app.tenant,
                username=self.account.address,
                cache_state=_reveal(self.credentials.token_cache),
                refresh_token=_reveal(self.credentials.refresh_token),
                timeout=self._timeout,
                http_client=self._msal_http_client,
            )
        return self._tokens

    async def _acquire(self, *, force_refresh: bool) -> Grant:
        tokens = self._wire()
        from mailwarm.providers._msal import TokenFailure

        try:
            grant = await asyncio.to_thread(tokens.acquire, force_refresh=force_refresh)
        except TokenFailure as failure:
            self._grant, self._valid_until = None, None
            raise self._error(failure) from None
        now = self._context.clock.now()
        self._grant = grant
        self._valid_until = now + timedelta(seconds=grant.expires_in) - _EARLY
        state = tokens.export_if_changed()
        if state is not None:
            await self._persist(state, grant, now)
        return grant

    async def _persist(self, state: str, grant: Grant, now: datetime) -> None:
        updated = self.credentials.model_copy(
            update={
                "token_cache": SecretStr(state),
                "scopes": sorted(grant.scopes),
                "token_expires_at": now + timedelta(seconds=grant.expires_in),
            }
        )
        self.credentials = updated
        try:
            await self._context.on_credentials(updated)
        except Exception as exc:
            # The new tokens still work from memory; losing them only costs a refresh from the
            # previous cache after a restart. The sink's message might echo what it was given,
            # so only its type is logged.
            log.warning(
                "could not store rotated Microsoft tokens for account %s (%s)",
                self.account.id,
                type(exc).__name__,
            )

    def _error(self, failure: TokenFailure) -> ProviderError:
        where = {"provider": self._provider, "account_id": self.account.id}
        if failure.kind == "transient":
            return TransientProviderError(
                f"Microsoft sign-in is unavailable ({failure}); trying again later", **where
            )
        if failure.kind == "app":
            return AuthExpired(
                f"Microsoft Entra ID refused the OAuth app ({failure}): check the client id, "
                "client secret and tenant of the 'microsoft' OAuth app, then reconnect",
                **where,
            )
        return AuthExpired(
            f"Microsoft sign-in for {self.account.address} no longer works ({failure}): "
            "reconnect the account",
            **where,
        )


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
