"""Sign-in: login, refresh rotation and reuse detection, logout, /auth/me, tampered tokens."""

from __future__ import annotations

import asyncio
import importlib
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from mailwarm.server import Principal, Role, ServerSettings, _sessions
from mailwarm.server._jwt import issue_access_token
from mailwarm.server._passwords import needs_rehash
from mailwarm.storage._schema import audit_log, refresh_tokens, users

# routes/__init__ binds the name ``auth`` to the router: reach the module itself.
auth_routes = importlib.import_module("mailwarm.server.routes.auth")

if TYPE_CHECKING:
    from conftest import Org  # tests/server/conftest.py

PASSWORD = "correct horse battery staple"  # conftest.PASSWORD, every fixture user's


async def login(
    api: httpx.AsyncClient, email: str, password: str = PASSWORD, expect: int = 200
) -> dict[str, Any]:
    answer = await api.post("/auth/login", json={"email": email, "password": password})
    assert answer.status_code == expect, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def refresh(api: httpx.AsyncClient, token: str) -> httpx.Response:
    return await api.post("/auth/refresh", json={"refresh_token": token})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def move_clock(monkeypatch: pytest.MonkeyPatch, by: timedelta) -> None:
    monkeypatch.setattr(_sessions, "_now", lambda: datetime.now(UTC) + by)


async def audit_rows(app: Any) -> list[dict[str, Any]]:
    async with app.state.services.engine.connect() as conn:
        rows = (await conn.execute(select(audit_log).order_by(audit_log.c.id))).all()
    return [dict(r._mapping) for r in rows]


# -- login -------------------------------------------------------------------------------------


async def test_login_answers_tokens_that_sign_in(api: httpx.AsyncClient, org: Org) -> None:
    tokens = await login(api, org.emails[Role.ADMIN])
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    assert len(tokens["refresh_token"]) >= 43  # 32 random bytes, URL-safe base64
    me = await api.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json() == {
        "id": org.users[Role.ADMIN],
        "email": org.emails[Role.ADMIN],
        "role": "admin",
        "organisation": {"id": org.tenant_id, "name": "acme"},
    }
    assert "hash" not in me.text
    assert "argon2" not in me.text


async def test_login_email_is_case_insensitive(api: httpx.AsyncClient, org: Org) -> None:
    await login(api, org.emails[Role.OWNER].upper())


async def test_refresh_tokens_are_stored_only_as_hashes(
    api: httpx.AsyncClient, app: Any, org: Org
) -> None:
    tokens = await login(api, org.emails[Role.OWNER])
    async with app.state.services.engine.connect() as conn:
        stored = (await conn.execute(select(refresh_tokens))).all()
    assert len(stored) == 1
    assert stored[0].token_hash == _sessions.hash_token(tokens["refresh_token"])
    assert tokens["refresh_token"] not in json.dumps([str(v) for v in stored[0]])


async def test_wrong_password_and_unknown_email_answer_alike(
    api: httpx.AsyncClient, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str | None] = []
    real = auth_routes.verify_password

    async def spy(stored: str | None, password: str) -> bool:
        checked.append(stored)
        return await real(stored, password)

    monkeypatch.setattr(auth_routes, "verify_password", spy)
    wrong = await api.post(
        "/auth/login", json={"email": org.emails[Role.OWNER], "password": "not it"}
    )
    unknown = await api.post(
        "/auth/login", json={"email": "nobody@acme.example", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["detail"] == "the email or password is wrong"
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    # Both paths hash once: the unknown email against the dummy hash.
    assert len(checked) == 2
    assert checked[0] is not None
    assert checked[1] is None


async def test_login_rejects_unknown_fields(api: httpx.AsyncClient, org: Org) -> None:
    answer = await api.post(
        "/auth/login",
        json={"email": org.emails[Role.OWNER], "password": PASSWORD, "role": "owner"},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "role"


async def test_login_rehashes_an_outdated_hash(api: httpx.AsyncClient, app: Any, org: Org) -> None:
    old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    assert needs_rehash(old)
    user_id = org.users[Role.VIEWER]
    async with app.state.services.engine.begin() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(password_hash=old))
    await login(api, org.emails[Role.VIEWER])
    async with app.state.services.engine.connect() as conn:
        new = await conn.scalar(select(users.c.password_hash).where(users.c.id == user_id))
    assert new != old
    assert not needs_rehash(new)
    await login(api, org.emails[Role.VIEWER])  # the new hash verifies


async def test_disabled_user_can_neither_log_in_nor_use_tokens(
    api: httpx.AsyncClient, app: Any, org: Org
) -> None:
    tokens = await login(api, org.emails[Role.MANAGER])
    async with app.state.services.engine.begin() as conn:
        await conn.execute(
            update(users).where(users.c.id == org.users[Role.MANAGER]).values(disabled=True)
        )
    refused = await login(api, org.emails[Role.MANAGER], expect=401)
    assert refused["detail"] == "the email or password is wrong"
    for token in (tokens["access_token"], org.tokens[Role.MANAGER]):
        me = await api.get("/auth/me", headers=bearer(token))
        assert me.status_code == 401
    assert (await refresh(api, tokens["refresh_token"])).status_code == 401
    assert (await api.get("/auth/me", headers=org.auth(Role.OWNER))).status_code == 200


async def test_a_token_with_a_stale_role_is_refused(
    api: httpx.AsyncClient, app: Any, org: Org
) -> None:
    async with app.state.services.engine.begin() as conn:
        await conn.execute(
            update(users).where(users.c.id == org.users[Role.ADMIN]).values(role="viewer")
        )
    assert (await api.get("/auth/me", headers=org.auth(Role.ADMIN))).status_code == 401
    tokens = await login(api, org.emails[Role.ADMIN])
    me = await api.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.json()["role"] == "viewer"


async def test_me_needs_a_bearer_token(api: httpx.AsyncClient) -> None:
    answer = await api.get("/auth/me")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


# -- refresh -----------------------------------------------------------------------------------


async def test_refresh_rotates_the_token(api: httpx.AsyncClient, org: Org) -> None:
    first = await login(api, org.emails[Role.OWNER])
    answer = await refresh(api, first["refresh_token"])
    assert answer.status_code == 200
    second = answer.json()
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second["refresh_token"] != first["refresh_token"]
    me = await api.get("/auth/me", headers=bearer(second["access_token"]))
    assert me.json()["id"] == org.users[Role.OWNER]
    assert (await refresh(api, first["refresh_token"])).status_code == 401


async def test_reuse_revokes_the_whole_family(api: httpx.AsyncClient, app: Any, org: Org) -> None:
    first = await login(api, org.emails[Role.OWNER])
    other_session = await login(api, org.emails[Role.OWNER])
    second = (await refresh(api, first["refresh_token"])).json()
    third = (await refresh(api, second["refresh_token"])).json()
    stolen = await refresh(api, first["refresh_token"])  # a copy of a used token comes back
    assert stolen.status_code == 401
    assert "sign in again" in stolen.json()["detail"]
    assert (await refresh(api, third["refresh_token"])).status_code == 401  # newest is dead too
    assert (await refresh(api, other_session["refresh_token"])).status_code == 200  # not its
    actions = [(r["action"], r["detail"]["outcome"]) for r in await audit_rows(app)]
    assert ("refresh_reuse_detected", "denied") in actions


async def test_unknown_refresh_token_is_refused(api: httpx.AsyncClient) -> None:
    answer = await refresh(api, "made-up")
    assert answer.status_code == 401
    assert (await api.post("/auth/refresh", json={})).status_code == 422


async def test_refresh_token_expires(
    api: httpx.AsyncClient, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = await login(api, org.emails[Role.OWNER])
    move_clock(monkeypatch, timedelta(days=14, minutes=1))  # refresh_token_days = 14
    assert (await refresh(api, tokens["refresh_token"])).status_code == 401


async def test_a_family_ends_after_session_max_however_often_rotated(
    api: httpx.AsyncClient, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = (await login(api, org.emails[Role.OWNER]))["refresh_token"]
    for day in (10, 20, 29):  # each token is good for 14 days: rotation keeps it alive
        move_clock(monkeypatch, timedelta(days=day))
        answer = await refresh(api, token)
        assert answer.status_code == 200, day
        token = answer.json()["refresh_token"]
    move_clock(monkeypatch, timedelta(days=30, minutes=1))  # session_max_days = 30
    assert (await refresh(api, token)).status_code == 401


async def test_concurrent_refreshes_with_one_token_exactly_one_wins(
    api: httpx.AsyncClient, app: Any, org: Org
) -> None:
    token = (await login(api, org.emails[Role.OWNER]))["refresh_token"]
    answers = await asyncio.gather(*(refresh(api, token) for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401, 401]
    async with app.state.services.engine.connect() as conn:
        rows = (await conn.execute(select(refresh_tokens))).all()
    assert len(rows) == 2  # the login's token and exactly one successor


# -- logout ------------------------------------------------------------------------------------


async def test_logout_revokes_the_session(api: httpx.AsyncClient, app: Any, org: Org) -> None:
    first = await login(api, org.emails[Role.OWNER])
    kept = await login(api, org.emails[Role.OWNER])
    second = (await refresh(api, first["refresh_token"])).json()
    answer = await api.post("/auth/logout", json={"refresh_token": second["refresh_token"]})
    assert answer.status_code == 204
    assert (await refresh(api, second["refresh_token"])).status_code == 401
    assert (await refresh(api, kept["refresh_token"])).status_code == 200  # another session
    unknown = await api.post("/auth/logout", json={"refresh_token": "never-issued"})
    assert unknown.status_code == 204
    assert (await api.post("/auth/logout", json={})).status_code == 422
    assert "logout" in [r["action"] for r in await audit_rows(app)]


async def test_logout_all_revokes_every_session(api: httpx.AsyncClient, org: Org) -> None:
    sessions = [await login(api, org.emails[Role.ADMIN]) for _ in range(3)]
    other = await login(api, org.emails[Role.OWNER])
    assert (await api.post("/auth/logout-all")).status_code == 401
    answer = await api.post("/auth/logout-all", headers=bearer(sessions[0]["access_token"]))
    assert answer.status_code == 204
    for session in sessions:
        assert (await refresh(api, session["refresh_token"])).status_code == 401
    assert (await refresh(api, other["refresh_token"])).status_code == 200


# -- audit -------------------------------------------------------------------------------------


async def test_every_auth_event_is_audited_without_secrets(
    api: httpx.AsyncClient, app: Any, org: Org
) -> None:
    email = org.emails[Role.OWNER]
    first = await login(api, email)
    await login(api, email, "wrong password!", expect=401)
    second = (await refresh(api, first["refresh_token"])).json()
    await refresh(api, first["refresh_token"])  # reuse
    third = await login(api, email)
    await api.post("/auth/logout", json={"refresh_token": third["refresh_token"]})
    await api.post("/auth/logout-all", headers=bearer(third["access_token"]))
    for _ in range(2):
        await login(api, email, "wrong again!!", expect=401)
    await login(api, email, "wrong again!!", expect=429)  # the 6th attempt in the minute
    rows = await audit_rows(app)
    events = [(r["action"], r["detail"]["outcome"]) for r in rows]
    assert events == [
        ("login", "ok"),
        ("login", "failed"),
        ("refresh", "ok"),
        ("refresh_reuse_detected", "denied"),
        ("login", "ok"),
        ("logout", "ok"),
        ("logout_all", "ok"),
        ("login", "failed"),
        ("login", "failed"),
        ("login", "limited"),
    ]
    for row in rows:
        assert row["tenant_id"] == org.tenant_id
        assert row["at"].tzinfo is not None
        assert row["actor"] == org.users[Role.OWNER]
    dumped = json.dumps([{k: str(v) for k, v in r.items()} for r in rows])
    secrets = [PASSWORD, "wrong password!", "wrong again!!"]
    for tokens in (first, second, third):
        secrets += [tokens["refresh_token"], tokens["access_token"]]
    for secret in secrets:
        assert secret not in dumped


# -- tampered access tokens ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "forge",
    [
        "none_alg",
        "wrong_key",
        "wrong_audience",
        "wrong_issuer",
        "expired",
        "refresh_type",
        "garbage",
    ],
)
async def test_tampered_tokens_are_refused(
    api: httpx.AsyncClient, org: Org, server_settings: ServerSettings, forge: str
) -> None:
    now = datetime.now(UTC)
    claims = {
        "sub": org.users[Role.OWNER],
        "org": org.tenant_id,
        "role": "owner",
        "typ": "access",
        "iss": "mailwarm",
        "aud": "mailwarm-api",
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "jti": "x",
    }
    assert server_settings.jwt_secret is not None
    key, algorithm = server_settings.jwt_secret.get_secret_value(), "HS256"
    if forge == "none_alg":
        key, algorithm = "", "none"
    elif forge == "wrong_key":
        key = "another-secret-" + "y" * 40
    elif forge == "wrong_audience":
        claims["aud"] = "someone-else"
    elif forge == "wrong_issuer":
        claims["iss"] = "evil"
    elif forge == "expired":
        claims["exp"] = int((now - timedelta(seconds=1)).timestamp())
    elif forge == "refresh_type":
        claims["typ"] = "refresh"
    token = "not.a.token" if forge == "garbage" else jwt.encode(claims, key, algorithm=algorithm)
    # A real token works on the same route, so the refusal is about the token itself.
    good = issue_access_token(
        Principal(org.users[Role.OWNER], org.tenant_id, Role.OWNER), server_settings
    )
    assert (await api.get("/auth/me", headers=bearer(good))).status_code == 200
    probe = await api.get("/auth/me", headers=bearer(token))
    assert probe.status_code == 401
    assert "invalid or expired" in probe.json()["detail"]


async def test_the_unsigned_claims_of_a_good_token_work(
    api: httpx.AsyncClient, org: Org, server_settings: ServerSettings
) -> None:
    # The forge above is not vacuous: the same claims signed with the secret are accepted.
    now = datetime.now(UTC)
    claims = {
        "sub": org.users[Role.OWNER],
        "org": org.tenant_id,
        "role": "owner",
        "typ": "access",
        "iss": "mailwarm",
        "aud": "mailwarm-api",
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "jti": "x",
    }
    assert server_settings.jwt_secret is not None
    token = jwt.encode(claims, server_settings.jwt_secret.get_secret_value(), algorithm="HS256")
    assert (await api.get("/auth/me", headers=bearer(token))).status_code == 200
