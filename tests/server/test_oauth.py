"""The OAuth authorization-code flow (PKCE S256, one-time state) for gmail and graph accounts:
start, callback, token storage (encrypted), and every refusal; the token endpoints are mocked
with respx."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from pydantic import SecretStr
from sqlalchemy import delete, select, update

from conftest import Org  # type: ignore[import-not-found]
from mailwarm._models import Credentials, EmailAccount
from mailwarm.providers import OAuthApp
from mailwarm.server import Role, _oauth
from mailwarm.server._oauth import OAuthConfig, state_key, take_pending
from mailwarm.storage import Accounts, Keyring, generate_master_key
from mailwarm.storage._schema import audit_log, credentials, settings

REFRESH = "1//new-refresh-token-SECRET-abc"
ACCESS = "ya29.new-access-token-SECRET-xyz"
OLD_REFRESH = "old-refresh-token-SECRET-000"
CODE = "4/auth-code-SECRET-123"
MS_TENANT = "contoso-tenant-id"
MS_TOKEN_URL = f"https://login.microsoftonline.com/{MS_TENANT}/oauth2/v2.0/token"
PUBLIC = "https://warm.example"
SECRETS = (REFRESH, ACCESS, OLD_REFRESH, CODE, "google-client-secret", "ms-client-secret")


@pytest.fixture(autouse=True)
def _setup(app: Any) -> Keyring:
    """Keys, OAuth apps, and the routes (until routes/__init__.py registers them)."""
    from mailwarm.server.routes.oauth import callback_router, router

    extras = app.state.services.extras
    ring = extras.get("keyring")
    if ring is None:
        ring = extras["keyring"] = Keyring([generate_master_key("k1")])
    extras["oauth_apps"] = OAuthConfig(
        apps={
            "google": OAuthApp(
                client_id="google-id", client_secret=SecretStr("google-client-secret")
            ),
            "microsoft": OAuthApp(
                client_id="ms-id", client_secret=SecretStr("ms-client-secret"), tenant=MS_TENANT
            ),
        },
        public_url=PUBLIC,
    )
    paths = {getattr(r, "path", "") for r in app.routes}
    if "/api/v1/oauth/callback/{provider}" not in paths:
        app.include_router(router, prefix="/api/v1")
        app.include_router(callback_router, prefix="/api/v1")
    assert isinstance(ring, Keyring)
    return ring


async def add_account(app: Any, org: Org, provider: str = "gmail", address: str = "") -> str:
    account = EmailAccount(address=address or f"ann-{provider}@example.com", provider=provider)
    creds = Credentials(account_id=account.id, kind="oauth2", refresh_token=SecretStr(OLD_REFRESH))
    if provider == "smtp":
        creds = Credentials(account_id=account.id, kind="password", password=SecretStr("pw"))
    stored = Accounts(
        app.state.services.engine, app.state.services.extras["keyring"], tenant_id=org.tenant_id
    )
    await stored.add(account, creds)
    return account.id


async def start(
    api: httpx.AsyncClient, org: Org, account_id: str, role: Role = Role.OWNER
) -> httpx.Response:
    return await api.post(f"/accounts/{account_id}/oauth/start", headers=org.auth(role))


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_answer(**extra: Any) -> httpx.Response:
    body = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_in": 3599,
        "scope": "https://www.googleapis.com/auth/gmail.modify",
        "token_type": "Bearer",
        **extra,
    }
    return httpx.Response(200, json=body)


async def dump(app: Any, table: Any) -> str:
    async with app.state.services.engine.connect() as conn:
        rows = (await conn.execute(select(table))).all()
    return json.dumps([list(r) for r in rows], default=str)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


async def test_start_google_gives_a_pkce_s256_url_bound_to_a_stored_state(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    account_id = await add_account(app, org)
    answer = await start(api, org, account_id)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["expires_in"] == 600
    url = body["authorization_url"]
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    params = query(url)
    assert params["response_type"] == "code"
    assert params["client_id"] == "google-id"
    assert params["redirect_uri"] == f"{PUBLIC}/api/v1/oauth/callback/google"
    assert params["scope"] == "https://www.googleapis.com/auth/gmail.modify"
    assert params["access_type"] == "offline"
    assert params["prompt"] == "consent"
    assert params["code_challenge_method"] == "S256"
    assert params["state"] == body["state"]
    assert len(base64.urlsafe_b64decode(body["state"] + "==")) >= 16  # >= 128 bits
    assert "client_secret" not in url
    # The stored row: keyed by the state's hash, verifier encrypted.
    raw = await dump(app, settings)
    assert body["state"] not in raw
    assert state_key(body["state"]) in raw
    pending = await take_pending(app.state.services.engine, _ring(app), body["state"])
    assert pending.verifier not in raw
    assert params["code_challenge"] == challenge_of(pending.verifier)
    assert 43 <= len(pending.verifier) <= 128
    assert (pending.tenant_id, pending.user_id, pending.account_id, pending.provider) == (
        org.tenant_id,
        org.users[Role.OWNER],
        account_id,
        "google",
    )
    assert pending.redirect_uri == params["redirect_uri"]
    assert pending.verifier not in repr(pending)


def _ring(app: Any) -> Keyring:
    ring = app.state.services.extras["keyring"]
    assert isinstance(ring, Keyring)
    return ring


async def test_start_microsoft_uses_the_tenant_and_offline_access(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    account_id = await add_account(app, org, "graph")
    answer = await start(api, org, account_id)
    assert answer.status_code == 200, answer.text
    url = answer.json()["authorization_url"]
    assert url.startswith(f"https://login.microsoftonline.com/{MS_TENANT}/oauth2/v2.0/authorize?")
    params = query(url)
    scopes = params["scope"].split()
    assert "offline_access" in scopes
    assert "https://graph.microsoft.com/Mail.ReadWrite" in scopes
    assert "https://graph.microsoft.com/Mail.Send" in scopes
    assert params["redirect_uri"] == f"{PUBLIC}/api/v1/oauth/callback/microsoft"
    assert params["code_challenge_method"] == "S256"
    assert params["client_id"] == "ms-id"


async def test_google_callback_stores_encrypted_tokens(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    account_id = await add_account(app, org)
    started = (await start(api, org, account_id)).json()
    challenge = query(started["authorization_url"])["code_challenge"]
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(_oauth.GOOGLE_TOKEN_URL).mock(return_value=token_answer())
        answer = await api.get(
            "/oauth/callback/google", params={"code": CODE, "state": started["state"]}
        )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "connected": True,
        "account_id": account_id,
        "provider": "google",
        "scopes": ["https://www.googleapis.com/auth/gmail.modify"],
    }
    form = parse_qs(route.calls.last.request.content.decode())
    assert form["grant_type"] == ["authorization_code"]
    assert form["code"] == [CODE]
    assert form["client_id"] == ["google-id"]
    assert form["client_secret"] == ["google-client-secret"]
    assert form["redirect_uri"] == [f"{PUBLIC}/api/v1/oauth/callback/google"]
    assert challenge_of(form["code_verifier"][0]) == challenge
    stored = Accounts(app.state.services.engine, _ring(app), tenant_id=org.tenant_id)
    creds = await stored.credentials(account_id)
    assert creds.kind == "oauth2"
    assert creds.refresh_token is not None
    assert creds.refresh_token.get_secret_value() == REFRESH
    assert creds.access_token is not None
    assert creds.access_token.get_secret_value() == ACCESS
    assert creds.scopes == ["https://www.googleapis.com/auth/gmail.modify"]
    assert creds.token_expires_at is not None
    assert creds.token_expires_at > datetime.now(UTC) + timedelta(minutes=55)
    assert_clean(answer.text)
    assert_clean(await dump(app, credentials))
    assert_clean(await dump(app, settings))
    audit = await dump(app, audit_log)
    assert_clean(audit)
    assert form["code_verifier"][0] not in audit
    assert "account.oauth.connect" in audit
    assert "account.oauth.start" in audit


async def test_microsoft_callback_adds_credentials_when_none_exist(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    account_id = await add_account(app, org, "graph")
    async with app.state.services.engine.begin() as conn:
        await conn.execute(delete(credentials).where(credentials.c.account_id == account_id))
    started = (await start(api, org, account_id)).json()
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(MS_TOKEN_URL).mock(
            return_value=token_answer(scope="https://graph.microsoft.com/Mail.Send offline_access")
        )
        answer = await api.get(
            "/oauth/callback/microsoft", params={"code": CODE, "state": started["state"]}
        )
    assert answer.status_code == 200, answer.text
    form = parse_qs(route.calls.last.request.content.decode())
    assert "offline_access" in form["scope"][0].split()
    stored = Accounts(app.state.services.engine, _ring(app), tenant_id=org.tenant_id)
    creds = await stored.credentials(account_id)
    assert creds.refresh_token is not None
    assert creds.refresh_token.get_secret_value() == REFRESH
    assert creds.username == "ann-graph@example.com"
    assert_clean(await dump(app, credentials))


async def test_a_state_is_single_use(app: Any, api: httpx.AsyncClient, org: Org) -> None:
    account_id = await add_account(app, org)
    state = (await start(api, org, account_id)).json()["state"]
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(_oauth.GOOGLE_TOKEN_URL).mock(return_value=token_answer())
        first = await api.get("/oauth/callback/google", params={"code": CODE, "state": state})
        second = await api.get("/oauth/callback/google", params={"code": CODE, "state": state})
    assert first.status_code == 200
    assert second.status_code == 400
    assert "start again" in second.json()["detail"]
    assert route.call_count == 1


async def test_unknown_or_missing_state_is_refused(api: httpx.AsyncClient) -> None:
    unknown = await api.get("/oauth/callback/google", params={"code": CODE, "state": "nope"})
    assert unknown.status_code == 400
    missing = await api.get("/oauth/callback/google", params={"code": CODE})
    assert missing.status_code == 400
    other = await api.get("/oauth/callback/yahoo", params={"code": CODE, "state": "x"})
    assert other.status_code == 404


async def test_an_expired_state_is_refused(app: Any, api: httpx.AsyncClient, org: Org) -> None:
    account_id = await add_account(app, org)
    state = (await start(api, org, account_id)).json()["state"]
    key = state_key(state)
    async with app.state.services.engine.begin() as conn:
        value = (
            await conn.execute(select(settings.c.value).where(settings.c.key == key))
        ).scalar_one()
        value["expires_at"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        await conn.execute(update(settings).where(settings.c.key == key).values(value=value))
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(_oauth.GOOGLE_TOKEN_URL).mock(return_value=token_answer())
        answer = await api.get("/oauth/callback/google", params={"code": CODE, "state": state})
    assert answer.status_code == 400
    assert answer.json()["detail"] == "the sign-in link expired: start again"
    assert not route.called


async def test_a_state_of_another_provider_is_refused(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    account_id = await add_account(app, org)
    state = (await start(api, org, account_id)).json()["state"]
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(MS_TOKEN_URL).mock(return_value=token_answer())
        answer = await api.get("/oauth/callback/microsoft", params={"code": CODE, "state": state})
    assert answer.status_code == 400
    assert "google" in answer.json()["detail"]
    assert not route.called


async def test_access_denied_is_a_clear_400(app: Any, api: httpx.AsyncClient, org: Org) -> None:
    account_id = await add_account(app, org)
    state = (await start(api, org, account_id)).json()["state"]
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(_oauth.GOOGLE_TOKEN_URL).mock(return_value=token_answer())
        answer = await api.get(
            "/oauth/callback/google", params={"error": "access_denied", "state": state}
        )
    assert answer.status_code == 400
    assert "access_denied" in answer.json()["detail"]
    assert not route.called
    stored = Accounts(app.state.services.engine, _ring(app), tenant_id=org.tenant_id)
    creds = await stored.credentials(account_id)
    assert creds.refresh_token is not None
    assert creds.refresh_token.get_secret_value() == OLD_REFRESH


async def test_a_refused_code_is_a_400_without_secrets(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    account_id = await add_account(app, org)
    state = (await start(api, org, account_id)).json()["state"]
    with respx.mock(assert_all_called=True) as mock:
        mock.post(_oauth.GOOGLE_TOKEN_URL).mock(
            return_value=httpx.Response(
                400, json={"error": "invalid_grant", "error_description": f"Bad code {CODE}"}
            )
        )
        answer = await api.get("/oauth/callback/google", params={"code": CODE, "state": state})
    assert answer.status_code == 400
    assert "invalid_grant" in answer.json()["detail"]
    assert_clean(answer.text)
    stored = Accounts(app.state.services.engine, _ring(app), tenant_id=org.tenant_id)
    creds = await stored.credentials(account_id)
    assert creds.refresh_token is not None
    assert creds.refresh_token.get_secret_value() == OLD_REFRESH
    assert "failure" in await dump(app, audit_log)


async def test_a_grant_without_refresh_token_or_gmail_scope_is_refused(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    account_id = await add_account(app, org)
    for answer_body, words in (
        ({"refresh_token": None}, "refresh token"),
        ({"scope": "openid email"}, "gmail.modify"),
    ):
        state = (await start(api, org, account_id)).json()["state"]
        with respx.mock(assert_all_called=True) as mock:
            mock.post(_oauth.GOOGLE_TOKEN_URL).mock(return_value=token_answer(**answer_body))
            answer = await api.get("/oauth/callback/google", params={"code": CODE, "state": state})
        assert answer.status_code == 400
        assert words in answer.json()["detail"]
        assert_clean(answer.text)


async def test_a_failing_token_endpoint_is_a_502(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    account_id = await add_account(app, org)
    state = (await start(api, org, account_id)).json()["state"]
    with respx.mock(assert_all_called=True) as mock:
        mock.post(_oauth.GOOGLE_TOKEN_URL).mock(
            return_value=httpx.Response(401, json={"error": "invalid_client"})
        )
        answer = await api.get("/oauth/callback/google", params={"code": CODE, "state": state})
    assert answer.status_code == 502
    assert "invalid_client" in answer.json()["detail"]
    assert_clean(answer.text)


async def test_start_is_scoped_to_the_tenant(
    app: Any, api: httpx.AsyncClient, org: Org, other_org: Org
) -> None:
    account_id = await add_account(app, org)
    answer = await start(api, other_org, account_id)
    assert answer.status_code == 404
    assert (await start(api, org, "no-such-account")).status_code == 404


async def test_start_needs_manage_accounts(app: Any, api: httpx.AsyncClient, org: Org) -> None:
    account_id = await add_account(app, org)
    assert (await start(api, org, account_id, Role.VIEWER)).status_code == 403
    assert (await start(api, org, account_id, Role.MANAGER)).status_code == 200
    anonymous = await api.post(f"/accounts/{account_id}/oauth/start")
    assert anonymous.status_code == 401


async def test_a_demoted_user_cannot_finish_a_sign_in(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    from mailwarm.storage._schema import users

    account_id = await add_account(app, org)
    state = (await start(api, org, account_id, Role.MANAGER)).json()["state"]
    async with app.state.services.engine.begin() as conn:
        await conn.execute(
            update(users).where(users.c.id == org.users[Role.MANAGER]).values(role="viewer")
        )
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(_oauth.GOOGLE_TOKEN_URL).mock(return_value=token_answer())
        answer = await api.get("/oauth/callback/google", params={"code": CODE, "state": state})
    assert answer.status_code == 403
    assert not route.called


async def test_start_refuses_password_accounts_and_missing_apps(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    smtp_id = await add_account(app, org, "smtp")
    answer = await start(api, org, smtp_id)
    assert answer.status_code == 409
    assert "gmail and graph accounts, not smtp" in answer.json()["detail"]
    app.state.services.extras["oauth_apps"] = OAuthConfig(apps={}, public_url=PUBLIC)
    gmail_id = await add_account(app, org)
    missing = await start(api, org, gmail_id)
    assert missing.status_code == 409
    assert "MAILWARM_GOOGLE_CLIENT_ID" in missing.json()["detail"]


def test_config_from_the_environment() -> None:
    config = OAuthConfig.from_env(
        {
            "MAILWARM_GOOGLE_CLIENT_ID": "gid",
            "MAILWARM_GOOGLE_CLIENT_SECRET": "gsecret",
            "MAILWARM_MICROSOFT_CLIENT_ID": "mid",
            "MAILWARM_PUBLIC_URL": "https://warm.example/",
        }
    )
    assert config.apps["google"].client_id == "gid"
    secret = config.apps["google"].client_secret
    assert secret is not None
    assert secret.get_secret_value() == "gsecret"
    assert config.apps["microsoft"].tenant == "common"
    assert config.apps["microsoft"].client_secret is None
    assert _oauth.redirect_uri(config, "google") == (
        "https://warm.example/api/v1/oauth/callback/google"
    )
    empty = OAuthConfig.from_env({})
    assert empty.apps == {}
    assert empty.public_url == "http://127.0.0.1:8000"
    assert "gsecret" not in repr(config)


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def test_a_browser_gets_a_page_that_says_the_mailbox_is_connected(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    account_id = await add_account(app, org, address="o'neil&co@example.com")
    state = (await start(api, org, account_id)).json()["state"]
    with respx.mock(assert_all_called=True) as mock:
        mock.post(_oauth.GOOGLE_TOKEN_URL).mock(return_value=token_answer())
        page = await api.get(
            "/oauth/callback/google", params={"code": CODE, "state": state}, headers=BROWSER
        )
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Mailbox connected</h1>" in page.text
    # What came from a user is escaped.
    assert "o&#x27;neil&amp;co@example.com is connected to mailwarm with Google" in page.text
    # Nothing loads, and the URL that held the code is not sent on as a Referer.
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text
    assert_clean(page.text)
    stored = Accounts(app.state.services.engine, _ring(app), tenant_id=org.tenant_id)
    creds = await stored.credentials(account_id)
    assert creds.refresh_token is not None
    assert creds.refresh_token.get_secret_value() == REFRESH


async def test_a_browser_gets_a_page_that_says_why_it_failed(
    app: Any, api: httpx.AsyncClient, org: Org
) -> None:
    account_id = await add_account(app, org)
    state = (await start(api, org, account_id)).json()["state"]
    denied = await api.get(
        "/oauth/callback/google",
        params={"error": "access_denied", "state": state},
        headers=BROWSER,
    )
    assert denied.status_code == 400
    assert denied.headers["content-type"].startswith("text/html")
    assert "<h1>The mailbox was not connected</h1>" in denied.text
    assert "cancelled or refused at google (access_denied)" in denied.text
    assert denied.headers["referrer-policy"] == "no-referrer"
    reused = await api.get(
        "/oauth/callback/google", params={"code": CODE, "state": state}, headers=BROWSER
    )
    assert reused.status_code == 400
    assert "start again" in reused.text
    audit = await dump(app, audit_log)
    assert "account.oauth.connect" in audit
    assert "failure" in audit
