"""The OAuth authorization-code flow with PKCE (RFC 7636, S256) for ``gmail`` and ``graph``
accounts: the operator's OAuth apps, the one-time sign-in state, the authorization URL and the
code exchange (docs/server/oauth.md).

A sign-in starts with a random ``state`` (256 bits) and a PKCE verifier. The server keeps
them in the ``settings`` table of the caller's organisation, under
``oauth_state.<sha256(state)>`` (the state itself is never stored), with the verifier
encrypted under the master keys and the (tenant, user, account, provider, redirect URI) the
state is bound to. The callback takes the row (one use: it is deleted before the code is
exchanged) and refuses it after :data:`STATE_TTL`. Nothing here logs or returns a token, a
code, a verifier or the client secret.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr
from sqlalchemy import and_, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailwarm.providers import OAuthApp
from mailwarm.providers._google_oauth import TOKEN_URL as GOOGLE_TOKEN_URL
from mailwarm.providers._graph_wire import GRAPH_SCOPES
from mailwarm.server._deps import Services
from mailwarm.server._problems import Problem
from mailwarm.storage import DecryptionError, Encryptor, Keyring, SecretContext
from mailwarm.storage._schema import settings

__all__ = [
    "ACCOUNT_PROVIDERS",
    "EXTRAS_KEY",
    "GOOGLE_AUTHORIZE_URL",
    "GOOGLE_SCOPES",
    "GOOGLE_TOKEN_URL",
    "MICROSOFT_SCOPES",
    "STATE_PREFIX",
    "STATE_TTL",
    "OAuthConfig",
    "PendingSignIn",
    "TokenGrant",
    "authorization_url",
    "check_grant",
    "code_challenge",
    "exchange_code",
    "microsoft_authorize_url",
    "microsoft_token_url",
    "new_verifier",
    "oauth_config",
    "redirect_uri",
    "safe_error_code",
    "save_pending",
    "state_key",
    "take_pending",
]

log = logging.getLogger("mailwarm.server.oauth")

EXTRAS_KEY = "oauth_apps"  # services.extras: an OAuthConfig (tests, host applications)
STATE_TTL = timedelta(minutes=10)
STATE_PREFIX = "oauth_state."
EXCHANGE_TIMEOUT = 20.0  # seconds for the token endpoint

GOOGLE_AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"

# What each provider's code needs: gmail.modify (send, read, label) for Gmail; Graph's
# permissions plus offline_access (a refresh token) for Microsoft.
GOOGLE_SCOPES = ("https://www.googleapis.com/auth/gmail.modify",)
GOOGLE_ACCEPTED = frozenset(
    {"https://www.googleapis.com/auth/gmail.modify", "https://mail.google.com/"}
)
MICROSOFT_SCOPES = (*GRAPH_SCOPES, "offline_access")

# The account's provider -> the OAuth provider that signs it in.
ACCOUNT_PROVIDERS: Mapping[str, str] = {"gmail": "google", "graph": "microsoft"}

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def microsoft_authorize_url(tenant: str) -> str:
    """Entra ID's authorization endpoint for ``tenant`` (``common``, ``organizations``...)."""
    return f"{MICROSOFT_AUTHORITY}/{tenant}/oauth2/v2.0/authorize"


def microsoft_token_url(tenant: str) -> str:
    """Entra ID's token endpoint for ``tenant``."""
    return f"{MICROSOFT_AUTHORITY}/{tenant}/oauth2/v2.0/token"


# -- configuration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthConfig:
    """The operator's OAuth apps by provider (``"google"``, ``"microsoft"``) and the server's
    external base URL (redirect URIs are ``{public_url}/api/v1/oauth/callback/{provider}``)."""

    apps: Mapping[str, OAuthApp] = field(default_factory=dict)
    public_url: str = DEFAULT_PUBLIC_URL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OAuthConfig:
        """From ``MAILWARM_GOOGLE_CLIENT_ID`` / ``_SECRET``, ``MAILWARM_MICROSOFT_CLIENT_ID``
        / ``_SECRET`` / ``_TENANT`` (default ``common``) and ``MAILWARM_PUBLIC_URL``."""
        env = os.environ if environ is None else environ
        apps: dict[str, OAuthApp] = {}
        for name, prefix in (("google", "MAILWARM_GOOGLE"), ("microsoft", "MAILWARM_MICROSOFT")):
            client_id = env.get(f"{prefix}_CLIENT_ID", "").strip()
            if not client_id:
                continue
            secret = env.get(f"{prefix}_CLIENT_SECRET", "").strip()
            tenant = env.get(f"{prefix}_TENANT", "").strip() or "common"
            apps[name] = OAuthApp(
                client_id=client_id,
                client_secret=SecretStr(secret) if secret else None,
                tenant=tenant,
            )
        public_url = env.get("MAILWARM_PUBLIC_URL", "").strip() or DEFAULT_PUBLIC_URL
        return cls(apps=apps, public_url=public_url.rstrip("/"))

    def app(self, provider: str) -> OAuthApp:
        """The app for ``provider``; a 409 problem naming the variables when there is none
        (the server is not set up for it: the operator, not the caller, changes that)."""
        found = self.apps.get(provider)
        if found is None:
            prefix = "MAILWARM_GOOGLE" if provider == "google" else "MAILWARM_MICROSOFT"
            raise Problem(
                409,
                f"the server has no {provider} OAuth app: the operator sets "
                f"{prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET (docs/server/oauth.md)",
                title="OAuth not configured",
            )
        return found


def oauth_config(services: Services) -> OAuthConfig:
    """The OAuth apps: ``services.extras["oauth_apps"]`` if set, else the environment (read
    once and kept there)."""
    found = services.extras.get(EXTRAS_KEY)
    if found is None:
        found = services.extras[EXTRAS_KEY] = OAuthConfig.from_env()
    assert isinstance(found, OAuthConfig)
    return found


def redirect_uri(config: OAuthConfig, provider: str) -> str:
    """Where the provider sends the browser back (register exactly this URI)."""
    from mailwarm.server._app import API_PREFIX

    return f"{config.public_url.rstrip('/')}{API_PREFIX}/oauth/callback/{provider}"


# -- PKCE and the authorization URL --------------------------------------------------------------


def new_verifier() -> str:
    """A PKCE code verifier: 64 random bytes, base64url (86 characters, RFC 7636 4.1)."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """The S256 challenge: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def state_key(state: str) -> str:
    """The ``settings`` key of a state: its SHA-256, never the state itself."""
    return STATE_PREFIX + hashlib.sha256(state.encode("utf-8")).hexdigest()


def authorization_url(
    app: OAuthApp,
    provider: str,
    *,
    redirect_to: str,
    state: str,
    verifier: str,
    login_hint: str | None = None,
) -> str:
    """The provider's sign-in page for this state and verifier."""
    params: dict[str, str] = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": redirect_to,
        "state": state,
        "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    if provider == "google":
        base = GOOGLE_AUTHORIZE_URL
        # offline + consent: Google hands out a refresh token only on a consent screen.
        params |= {
            "scope": " ".join(GOOGLE_SCOPES),
            "access_type": "offline",
            "prompt": "consent",
            "include_granted_scopes": "false",
        }
    elif provider == "microsoft":
        base = microsoft_authorize_url(app.tenant)
        params |= {
            "scope": " ".join(MICROSOFT_SCOPES),
            "response_mode": "query",
            "prompt": "select_account",
        }
    else:
        raise ValueError(f"unknown OAuth provider {provider!r}")
    if login_hint:
        params["login_hint"] = login_hint
    return f"{base}?{urlencode(params)}"


# -- the one-time state --------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingSignIn:
    """What a state is bound to. The verifier never shows in a repr."""

    tenant_id: str
    user_id: str
    account_id: str
    provider: str
    redirect_uri: str
    expires_at: datetime
    verifier: str = field(repr=False)


def _context(tenant_id: str, key: str) -> SecretContext:
    return SecretContext(tenant_id, "settings", key, "code_verifier")


def _now() -> datetime:
    return datetime.now(UTC)


async def save_pending(
    engine: AsyncEngine,
    keyring: Keyring,
    *,
    tenant_id: str,
    user_id: str,
    account_id: str,
    provider: str,
    redirect_to: str,
    verifier: str,
    now: datetime | None = None,
) -> tuple[str, PendingSignIn]:
    """Store a new sign-in (verifier encrypted) and return its fresh state. Expired sign-ins
    of the organisation are removed on the way."""
    moment = now or _now()
    state = secrets.token_urlsafe(32)  # 256 bits
    key = state_key(state)
    pending = PendingSignIn(
        tenant_id=tenant_id,
        user_id=user_id,
        account_id=account_id,
        provider=provider,
        redirect_uri=redirect_to,
        expires_at=moment + STATE_TTL,
        verifier=verifier,
    )
    value: dict[str, Any] = {
        "user_id": user_id,
        "account_id": account_id,
        "provider": provider,
        "redirect_uri": redirect_to,
        "expires_at": pending.expires_at.isoformat(),
        "verifier_enc": Encryptor(keyring).encrypt(verifier, _context(tenant_id, key)),
    }
    async with engine.begin() as conn:
        await conn.execute(
            delete(settings).where(
                and_(
                    settings.c.tenant_id == tenant_id,
                    settings.c.key.like(f"{STATE_PREFIX}%"),
                    settings.c.updated_at < moment - STATE_TTL,
                )
            )
        )
        await conn.execute(
            insert(settings).values(tenant_id=tenant_id, key=key, value=value, updated_at=moment)
        )
    return state, pending


async def take_pending(
    engine: AsyncEngine, keyring: Keyring, state: str, *, now: datetime | None = None
) -> PendingSignIn:
    """The sign-in of ``state``, removed (one use). 400 problems when it is unknown (or used
    already) or expired."""
    key = state_key(state)
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(settings.c.tenant_id, settings.c.value).where(settings.c.key == key)
            )
        ).first()
        if row is None:
            raise Problem(400, "unknown or used sign-in link: start again")
        removed = await conn.execute(
            delete(settings).where(settings.c.tenant_id == row.tenant_id, settings.c.key == key)
        )
        if removed.rowcount != 1:  # another request took it meanwhile
            raise Problem(400, "unknown or used sign-in link: start again")
    value = row.value if isinstance(row.value, dict) else {}
    try:
        expires_at = datetime.fromisoformat(str(value["expires_at"]))
        verifier = Encryptor(keyring).decrypt_text(
            str(value["verifier_enc"]), _context(row.tenant_id, key)
        )
        pending = PendingSignIn(
            tenant_id=row.tenant_id,
            user_id=str(value["user_id"]),
            account_id=str(value["account_id"]),
            provider=str(value["provider"]),
            redirect_uri=str(value["redirect_uri"]),
            expires_at=expires_at,
            verifier=verifier,
        )
    except (KeyError, ValueError, DecryptionError):
        raise Problem(400, "unknown or used sign-in link: start again") from None
    if pending.expires_at <= (now or _now()):
        raise Problem(400, "the sign-in link expired: start again")
    return pending


# -- the code exchange ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenGrant:
    """What the token endpoint granted. Tokens are SecretStr (never in a repr)."""

    access_token: SecretStr
    refresh_token: SecretStr | None
    expires_at: datetime | None
    scopes: list[str]


def safe_error_code(error: object) -> str:
    """An RFC 6749 error code fit to show (letters, digits, ``_.-``), else ``""``."""
    return error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else ""


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return safe_error_code(body.get("error") if isinstance(body, dict) else None)


async def exchange_code(
    app: OAuthApp,
    provider: str,
    *,
    code: str,
    redirect_to: str,
    verifier: str,
    http: httpx.AsyncClient | None = None,
    now: datetime | None = None,
) -> TokenGrant:
    """Trade the authorization code for tokens (with the PKCE verifier). A 400 problem when
    the provider refuses the code, 502 when it fails or refuses the app."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_to,
        "client_id": app.client_id,
        "code_verifier": verifier,
    }
    if app.client_secret is not None:
        form["client_secret"] = app.client_secret.get_secret_value()
    if provider == "google":
        url = GOOGLE_TOKEN_URL
    else:
        url = microsoft_token_url(app.tenant)
        form["scope"] = " ".join(MICROSOFT_SCOPES)
    client = http or httpx.AsyncClient(timeout=EXCHANGE_TIMEOUT)
    try:
        response = await client.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise Problem(
            502, f"the {provider} token endpoint did not answer ({type(exc).__name__}): retry"
        ) from None
    finally:
        if http is None:
            await client.aclose()
    if response.status_code != 200:
        error = _error_code(response)
        if error in ("invalid_grant", "invalid_request", "access_denied"):
            raise Problem(400, f"{provider} refused the sign-in code ({error}): start again")
        log.warning("the %s token endpoint answered %s (%s)", provider, response.status_code, error)
        raise Problem(
            502,
            f"{provider} refused the token request ({error or response.status_code}): the "
            "operator checks the OAuth app's client id, secret and redirect URI",
            title="Mail provider error",
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise Problem(502, f"{provider} answered the token request without an access token")
    refresh = body.get("refresh_token")
    expires_in = body.get("expires_in")
    scope = body.get("scope")
    expires_at = None
    if isinstance(expires_in, int | str) and str(expires_in).isdigit():
        expires_at = (now or _now()) + timedelta(seconds=int(expires_in))
    return TokenGrant(
        access_token=SecretStr(body["access_token"]),
        refresh_token=SecretStr(refresh) if isinstance(refresh, str) and refresh else None,
        expires_at=expires_at,
        scopes=sorted(set(scope.split())) if isinstance(scope, str) else [],
    )


def check_grant(provider: str, grant: TokenGrant) -> None:
    """400 when the grant cannot run warmup: no refresh token, or (Google) no Gmail scope."""
    if grant.refresh_token is None:
        raise Problem(
            400,
            f"{provider} granted no refresh token (offline access): start again and accept "
            "every permission asked",
        )
    if provider == "google" and grant.scopes and not GOOGLE_ACCEPTED & set(grant.scopes):
        raise Problem(
            400,
            "Gmail access was not granted (gmail.modify): start again and tick the Gmail "
            "permission on the consent screen",
        )
