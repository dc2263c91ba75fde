"""msal, wrapped for one Microsoft account: the only module that imports it.

msal is synchronous (it uses ``requests``; an async API is only requested, in
AzureAD/microsoft-authentication-library-for-python#88), so :class:`AccountTokens` is plain
blocking code that :mod:`mailwarm.providers._graph_auth` runs in a worker thread
(``asyncio.to_thread``), one call at a time per account.

Nothing here raises msal's or requests' exceptions, and nothing shows a token: failures come
out as :class:`TokenFailure`, which carries only the OAuth error code and the AADSTS numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import msal

from mailwarm.providers._graph_wire import GRAPH_SCOPES

__all__ = ["AccountTokens", "Grant", "TokenFailure"]

log = logging.getLogger(__name__)

# OAuth 2.0 error codes (RFC 6749 section 5.2) that point at the operator's app registration
# (a wrong or expired client secret is invalid_client, AADSTS7000215/7000222) rather than at
# the user.
_APP_MISCONFIGURED = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_scope", "invalid_request"}
)
_TRANSIENT = frozenset({"temporarily_unavailable", "server_error"})

FailureKind = Literal["user", "app", "transient"]


class TokenFailure(Exception):
    """Why no token could be had: ``kind`` says who can fix it (the user reconnecting, the
    operator fixing the app registration, or nobody: try later). ``code`` is the OAuth error
    code and ``aadsts`` Entra ID's numeric codes (AADSTS70000 ...), never a description, a
    username or a token."""

    def __init__(self, kind: FailureKind, code: str, aadsts: tuple[int, ...] = ()) -> None:
        self.kind: FailureKind = kind
        self.code = code
        self.aadsts = aadsts
        numbers = ", ".join(f"AADSTS{n}" for n in aadsts)
        super().__init__(f"{code} ({numbers})" if numbers else code)


@dataclass(frozen=True)
class Grant:
    """An access token and what it allows. The token never shows in a repr."""

    access_token: str = field(repr=False)
    scopes: frozenset[str]
    expires_in: int


class AccountTokens:
    """One account's msal application and serialised token cache (blocking; not thread-safe:
    the caller serialises calls).

    ``cache_state`` is a previously exported cache; ``refresh_token`` a token obtained
    elsewhere, used only while the cache holds nothing for the account (msal's documented
    migration path, ``acquire_token_by_refresh_token``). ``http_client`` is msal's own
    parameter: a requests-like session (tests pass a fake Entra ID); without it msal's own
    requests session is used with ``timeout`` seconds per request, so a hung sign-in cannot
    hold the account's token lock for ever.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        tenant: str,
        username: str,
        cache_state: str | None,
        refresh_token: str | None,
        timeout: float = 30.0,
        http_client: Any | None = None,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._authority = f"https://login.microsoftonline.com/{tenant}"
        self._username = username.lower()
        self._refresh_token = refresh_token
        self._http_client = http_client
        self._timeout = timeout
        self._cache = msal.SerializableTokenCache()
        if cache_state:
            try:
                self._cache.deserialize(cache_state)
            except ValueError:
                # A damaged cache is not fatal while a refresh token can rebuild it.
                log.warning("the stored msal token cache is unreadable; starting a new one")
                self._cache = msal.SerializableTokenCache()
        self._app: msal.ConfidentialClientApplication | None = None

    def __repr__(self) -> str:
        return f"<AccountTokens {self._username}>"

    def _application(self) -> msal.ConfidentialClientApplication:
        # Built on first need: msal fetches the authority's OpenID configuration right in the
        # constructor. Instance discovery is off because the authority is always
        # login.microsoftonline.com, a host msal already knows.
        if self._app is None:
            kwargs: dict[str, Any] = {}
            if self._http_client is not None:
                kwargs["http_client"] = self._http_client
            self._app = msal.ConfidentialClientApplication(
                self._client_id,
                client_credential=self._client_secret,
                authority=self._authority,
                token_cache=self._cache,
                instance_discovery=False,
                timeout=self._timeout,
                **kwargs,
            )
        return self._app

    def _account(self, app: msal.ConfidentialClientApplication) -> dict[str, Any] | None:
        accounts: list[dict[str, Any]] = app.get_accounts()
        for account in accounts:
            if str(account.get("username", "")).lower() == self._username:
                return account
        # The sign-in name (UPN) may differ from the mailbox address; a cache kept per
        # account holds one account, which is then the one.
        return accounts[0] if len(accounts) == 1 else None

    def acquire(self, *, force_refresh: bool = False) -> Grant:
        """An access token for the Graph scopes: from the cache, refreshed by msal when
        due (or when ``force_refresh``), else by migrating ``refresh_token``."""
        try:
            return self._acquire(force_refresh)
        except TokenFailure:
            raise
        except ValueError:
            # msal raises ValueError when the tenant's OpenID configuration cannot be read
            # (an unknown tenant answers 400) and when a response is not JSON.
            raise TokenFailure("app", "authority_unavailable") from None
        except (OSError, msal.exceptions.MsalError):
            # requests' exceptions derive from OSError; MsalServiceError is a 5xx answer.
            raise TokenFailure("transient", "token_endpoint_unreachable") from None

    def _acquire(self, force_refresh: bool) -> Grant:
        app = self._application()
        account = self._account(app)
        result: dict[str, Any] | None = None
        if account is not None:
            result = app.acquire_token_silent_with_error(
                list(GRAPH_SCOPES), account, force_refresh=force_refresh
            )
        if result is None and self._refresh_token:
            result = app.acquire_token_by_refresh_token(self._refresh_token, list(GRAPH_SCOPES))
        if result is None:
            raise TokenFailure("user", "no_token_in_cache")
        if "error" in result:
            raise _failure(result)
        token = str(result["access_token"])
        return Grant(token, self._granted(result, token), int(result.get("expires_in") or 0))

    def _granted(self, result: dict[str, Any], token: str) -> frozenset[str]:
        if result.get("scope"):
            return frozenset(str(result["scope"]).split())
        # A token served from the cache comes without its scopes: read them from its entry.
        entries = self._cache.search(
            msal.TokenCache.CredentialType.ACCESS_TOKEN, query={"secret": token}
        )
        entry = next(iter(entries), None)
        return frozenset(str(entry.get("target", "")).split()) if entry else frozenset()

    def export_if_changed(self) -> str | None:
        """The serialised cache if it changed since the last export (or the start)."""
        if not self._cache.has_state_changed:
            return None
        return str(self._cache.serialize())


def _failure(result: dict[str, Any]) -> TokenFailure:
    code = str(result.get("error") or "unknown_error")
    raw = result.get("error_codes") or ()
    aadsts = tuple(int(n) for n in raw if isinstance(n, int))
    if code in _TRANSIENT:
        return TokenFailure("transient", code, aadsts)
    if code in _APP_MISCONFIGURED:
        return TokenFailure("app", code, aadsts)
    # invalid_grant (a revoked, expired or password-changed refresh token),
    # interaction_required / consent_required (MFA or consent needed) and anything unknown:
    # only the user signing in again can fix it.
    return TokenFailure("user", code, aadsts)
