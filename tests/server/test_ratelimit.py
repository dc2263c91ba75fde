"""Rate limits: sign-in per account and per address before hashing (memory and Redis), the
per-user API limit, and which address counts behind proxies."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import Depends
from starlette.requests import Request

from mailwarm.server import Role, ServerSettings, create_app
from mailwarm.server._ratelimit import RateLimits, client_ip, limit_user
from mailwarm.storage import upgrade

if TYPE_CHECKING:
    from conftest import Org  # tests/server/conftest.py

auth_routes = importlib.import_module("mailwarm.server.routes.auth")
PASSWORD = "correct horse battery staple"  # conftest.PASSWORD
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Every password check the login route makes (the expensive part)."""
    seen: list[str | None] = []
    real = auth_routes.verify_password

    async def spy(stored: str | None, password: str) -> bool:
        seen.append(stored)
        return await real(stored, password)

    monkeypatch.setattr(auth_routes, "verify_password", spy)
    return seen


async def attempt(
    api: httpx.AsyncClient, email: str, password: str = "wrong", **kwargs: Any
) -> httpx.Response:
    return await api.post("/auth/login", json={"email": email, "password": password}, **kwargs)


async def test_an_account_gets_five_attempts_a_minute(
    api: httpx.AsyncClient, org: Org, checks: list[str | None]
) -> None:
    email = org.emails[Role.OWNER]
    for _ in range(5):
        assert (await attempt(api, email)).status_code == 401
    limited = await attempt(api, email, PASSWORD)  # even the right password now waits
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    retry = int(limited.headers["retry-after"])
    assert 1 <= retry <= 60
    assert limited.json()["retry_after"] == retry
    assert "retry in" in limited.json()["detail"]
    assert len(checks) == 5  # the limited attempt hashed nothing


async def test_the_limit_is_per_account_whatever_the_address(
    app: Any, org: Org, checks: list[str | None]
) -> None:
    # Behind a trusted proxy each attempt comes from another client address.
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
    app.state.services.settings = app.state.services.settings.model_copy(
        update={"trusted_proxies": ["10.0.0.0/8"]}
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as api:
        answers = [
            await attempt(
                api, org.emails[Role.ADMIN].upper(), headers={"X-Forwarded-For": f"203.0.113.{n}"}
            )
            for n in range(7)
        ]
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 2
    assert len(checks) == 5


async def test_an_address_gets_five_attempts_whatever_the_account(
    api: httpx.AsyncClient, org: Org, checks: list[str | None]
) -> None:
    answers = [await attempt(api, f"guess{n}@acme.example") for n in range(6)]
    assert [a.status_code for a in answers] == [401] * 5 + [429]
    assert len(checks) == 5


async def test_concurrent_attempts_are_counted_exactly(
    api: httpx.AsyncClient, org: Org, checks: list[str | None]
) -> None:
    answers = await asyncio.gather(*(attempt(api, org.emails[Role.OWNER]) for _ in range(20)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [401] * 5 + [429] * 15
    assert len(checks) == 5


async def test_login_limit_on_redis(tmp_path: Path, checks: list[str | None]) -> None:
    settings = ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'redis.db'}",
        jwt_secret="test-secret-" + "r" * 40,  # type: ignore[arg-type]
        run_scheduler=False,
        redis_url=REDIS_URL,
    )
    assert settings.database_url is not None
    await upgrade(settings.database_url)
    app = create_app(settings)
    prefix = f"mailwarm-test-{uuid.uuid4().hex}"
    limits = RateLimits(settings, key_prefix=prefix)
    app.state.services.extras["rate_limits"] = limits
    import coredis

    redis = coredis.Redis.from_url(REDIS_URL)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as api:
                answers = await asyncio.gather(
                    *(attempt(api, "someone@example.com") for _ in range(20))
                )
        assert sorted(a.status_code for a in answers) == [401] * 5 + [429] * 15
        assert len(checks) == 5
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        assert keys  # the counts are in Redis, not in this process
    finally:
        await limits.storage.reset()
        leftover = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        assert leftover == []


@pytest.fixture
async def limited_api(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with one extra route behind ``limit_user``, and a 3/minute API limit."""
    services = app.state.services
    services.settings = services.settings.model_copy(update={"api_limit": "3/minute"})

    async def probe() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_api_route("/api/v1/probe", probe, dependencies=[Depends(limit_user)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1") as c:
        yield c


async def test_the_api_limit_is_per_user(limited_api: httpx.AsyncClient, org: Org) -> None:
    owner = [
        (await limited_api.get("/probe", headers=org.auth(Role.OWNER))).status_code
        for _ in range(4)
    ]
    assert owner == [200, 200, 200, 429]
    assert (await limited_api.get("/probe", headers=org.auth(Role.VIEWER))).status_code == 200
    limited = await limited_api.get("/probe", headers=org.auth(Role.OWNER))
    assert int(limited.headers["retry-after"]) >= 1
    assert (await limited_api.get("/probe")).status_code == 401  # the caller comes first


def request_from(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"type": "http", "client": (peer, 1), "headers": headers}
    return Request(scope)


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("198.51.100.7", "1.2.3.4", [], "198.51.100.7"),  # no proxies: the header is ignored
        ("198.51.100.7", "1.2.3.4", ["10.0.0.1"], "198.51.100.7"),  # peer not a proxy
        ("10.0.0.1", "1.2.3.4", ["10.0.0.1"], "1.2.3.4"),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4", ["10.0.0.1"], "1.2.3.4"),  # forged left entry
        ("10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.2", ["10.0.0.0/24"], "1.2.3.4"),
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", ["10.0.0.0/24"], "10.0.0.3"),  # all proxies
        ("10.0.0.1", None, ["10.0.0.1"], "10.0.0.1"),
        ("::1", "2001:db8::5", ["::1"], "2001:db8::5"),
    ],
)
def test_client_address(
    peer: str, forwarded: str | None, trusted: list[str], expected: str
) -> None:
    assert client_ip(request_from(peer, forwarded), trusted) == expected
